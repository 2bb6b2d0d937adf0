//! The Nix library (`nix/`) and the example cluster (`example/`) against the real nix, busybox
//! and QEMU of this machine: the blueprint the example evaluates to is one the control plane
//! reads, the built-in module evaluator refuses bad clusters with a sentence naming the option,
//! the closures build and run, the microVM boots, and the NixOS service modules parse and render
//! their units.
//!
//! Tests that need the Debian cloud kernel (the microVM) skip with a loud message when /boot has
//! none; CI installs `linux-image-cloud-amd64`, so they run there.

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::example_kernel;
use schema::model::{Backend, Blueprint, CheckKind};
use tempfile::TempDir;

/// What nix needs on these machines, passed to every nix command (CI starts with no nix.conf).
const NIX_CONFIG: &str =
    "experimental-features = nix-command flakes\nsubstituters =\nsandbox = false";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("ci_service sits in the workspace root")
        .to_path_buf()
}

fn nix_command(program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("NIX_CONFIG", NIX_CONFIG);
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("nix prints UTF-8")
}

/// Copies a directory, following symlinks, as `cp -rL` does: `example/nix` links to `../nix`,
/// and a cluster repository of its own (what `pcr up` pushes) holds a real copy.
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create copy target");
    for entry in fs::read_dir(from).expect("read source dir") {
        let entry = entry.expect("dir entry");
        let path = entry.path();
        let target = to.join(entry.file_name());
        if fs::metadata(&path).expect("stat").is_dir() {
            copy_dir(&path, &target);
        } else {
            fs::copy(&path, &target).expect("copy file");
        }
    }
}

/// A flake must be in a git repository with its files added for nix to see them.
fn git_add_all(dir: &Path) {
    if !dir.join(".git").exists() {
        run_ok(Command::new("git").args(["init", "-q"]).current_dir(dir));
    }
    run_ok(Command::new("git").args(["add", "-A"]).current_dir(dir));
}

/// The example as a standalone cluster repository.
fn example_repo() -> TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&repo().join("example"), dir.path());
    git_add_all(dir.path());
    dir
}

/// `--override-input kernel path:<dir>`: the example locks the kernel at
/// /var/lib/procurator/example-kernel; tests use their own copy and leave the machine alone.
fn kernel_override(kernel: &TempDir) -> Vec<String> {
    vec![
        "--override-input".into(),
        "kernel".into(),
        format!("path:{}", kernel.path().join("kernel").display()),
        "--no-write-lock-file".into(),
    ]
}

fn nix_eval_json(flake: &Path, attr: &str, extra: &[String]) -> Output {
    run(nix_command("nix")
        .args(["eval", "--json"])
        .arg(format!("{}#{attr}", flake.display()))
        .args(extra))
}

/// `nix build --json --no-link` (nix 2.8 has no --print-out-paths) → the output paths, sorted
/// (nix does not print them in the order of the arguments).
fn nix_build(flake: &Path, attrs: &[&str], extra: &[String]) -> BTreeSet<String> {
    let mut cmd = nix_command("nix");
    cmd.args(["build", "--json", "--no-link"]);
    for attr in attrs {
        cmd.arg(format!("{}#{attr}", flake.display()));
    }
    let json: serde_json::Value =
        serde_json::from_str(&run_ok(cmd.args(extra))).expect("nix build --json prints JSON");
    json.as_array()
        .expect("a list of builds")
        .iter()
        .map(|b| {
            b["outputs"]["out"]
                .as_str()
                .expect("an out path")
                .to_string()
        })
        .collect()
}

/// The one path of `paths` whose name is `name`.
fn named<'a>(paths: &'a BTreeSet<String>, name: &str) -> &'a str {
    let suffix = format!("-{name}");
    let found: Vec<&String> = paths.iter().filter(|p| p.ends_with(&suffix)).collect();
    assert_eq!(found.len(), 1, "no single path named {name} in {paths:?}");
    found[0]
}

fn free_port() -> u16 {
    // The port is free when we look; the service binds it right after. Good enough for
    // loopback on a test machine, and busybox httpd cannot take a listening socket.
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind port 0")
        .port()
}

/// GET http://127.0.0.1:port/path → (status, body), or None when nothing answers yet.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())?;
    Some((status, body))
}

fn poll<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills the child when the test ends, passed or not.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn example_blueprint_is_what_the_control_plane_reads() {
    let Some(kernel) = example_kernel() else {
        return;
    };
    let example = example_repo();
    let out = nix_eval_json(example.path(), "blueprintJSON", &kernel_override(&kernel));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let blueprint = Blueprint::from_json(&text)
        .unwrap_or_else(|e| panic!("the example's blueprint is refused: {e}\n{text}"));

    assert_eq!(blueprint.cluster.name, "example");
    let names: BTreeSet<&str> = blueprint.vms.iter().map(|vm| vm.name.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["api", "vm", "web"]));
    let vm = |name: &str| blueprint.vms.iter().find(|v| v.name == name).expect("vm");

    let web = vm("web");
    assert_eq!(
        (web.replicas, web.backend, web.exec.as_str()),
        (1, Backend::Process, "bin/web")
    );
    assert_eq!(web.env.get("PORT").map(String::as_str), Some("8080"));
    assert!(matches!(
        &web.health_checks[0].kind,
        CheckKind::Http { port: 8080, path, .. } if path == "/healthz"
    ));
    let qemu = vm("vm");
    assert_eq!((qemu.backend, qemu.exec.as_str()), (Backend::Qemu, ""));
    assert_eq!(qemu.ports[0].host_port(), 8082);

    // The closures CI builds are the paths the blueprint names.
    let built = nix_build(
        example.path(),
        &["closures.api", "closures.vm", "closures.web"],
        &kernel_override(&kernel),
    );
    let in_blueprint: BTreeSet<String> = blueprint.vms.iter().map(|v| v.closure.clone()).collect();
    assert_eq!(built, in_blueprint);
}

#[test]
fn example_process_closures_build_and_serve_their_health_checks() {
    // Inputs are fetched lazily: the process workloads need no kernel.
    let example = example_repo();
    let built = nix_build(example.path(), &["closures.web", "closures.api"], &[]);
    let (web, api) = (named(&built, "web"), named(&built, "api"));

    let (web_port, api_port) = (free_port(), free_port());
    let spawn = |closure: &str, exec: &str, port: u16| {
        // An empty environment, as the worker gives: the closure must not need the host's PATH.
        Guard(
            Command::new(Path::new(closure).join(exec))
                .env_clear()
                .env("PORT", port.to_string())
                .env("GREETING", "hi from the test")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start the service"),
        )
    };
    let _web = spawn(web, "bin/web", web_port);
    let _api = spawn(api, "bin/api", api_port);

    let (status, body) = poll("web /healthz", Duration::from_secs(20), || {
        http_get(web_port, "/healthz")
    });
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, body) = poll("api health", Duration::from_secs(20), || {
        http_get(api_port, "/cgi-bin/health")
    });
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_str(&body).expect("JSON health");
    assert_eq!(health["status"], "ok");
    let (_, body) = http_get(api_port, "/cgi-bin/greeting?x=1").expect("greeting");
    let greeting: serde_json::Value = serde_json::from_str(&body).expect("JSON greeting");
    assert_eq!(greeting["greeting"], "hi from the test");
    assert_eq!(http_get(web_port, "/missing").map(|(s, _)| s), Some(404));
}

#[test]
fn example_flake_check_verifies_every_closure() {
    let Some(kernel) = example_kernel() else {
        return;
    };
    let example = example_repo();
    // checks.x86_64-linux.closures builds every closure and checks its layout.
    let out = run(nix_command("nix")
        .arg("flake")
        .arg("check")
        .arg(example.path())
        .args(kernel_override(&kernel)));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn example_vm_boots_under_qemu_and_serves_http() {
    let Some(kernel) = example_kernel() else {
        return;
    };
    for tool in ["qemu-system-x86_64", "/usr/lib/qemu/virtiofsd"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(
            found,
            "{tool} is missing; install qemu-system-x86 and qemu-system-common"
        );
    }
    let example = example_repo();
    let toplevel = PathBuf::from(named(
        &nix_build(example.path(), &["closures.vm"], &kernel_override(&kernel)),
        "vm-toplevel",
    ));
    for file in ["kernel", "initrd", "kernel-params", "init"] {
        assert!(toplevel.join(file).exists(), "toplevel has no {file}");
    }

    let run_dir = tempfile::tempdir().expect("tempdir");
    let socket = run_dir.path().join("virtiofs.sock");
    let serial = run_dir.path().join("serial.log");
    let qmp = run_dir.path().join("qmp.sock");
    let _virtiofsd = Guard(
        Command::new("/usr/lib/qemu/virtiofsd")
            .arg(format!("--socket-path={}", socket.display()))
            .args([
                "-o",
                "source=/nix/store",
                "-o",
                "cache=auto",
                "-o",
                "sandbox=chroot",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start virtiofsd"),
    );
    poll("the virtiofsd socket", Duration::from_secs(10), || {
        socket.exists().then_some(())
    });

    let port = free_port();
    let params = fs::read_to_string(toplevel.join("kernel-params")).expect("kernel-params");
    let started = Instant::now();
    let mut qemu = Guard(
        Command::new("qemu-system-x86_64")
            .args([
                "-M",
                "microvm,rtc=on",
                "-accel",
                "tcg",
                "-cpu",
                "max",
                "-m",
                "256M",
                "-smp",
                "1",
            ])
            .args(["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"])
            .args([
                "-object",
                "memory-backend-memfd,id=mem,size=256M,share=on",
                "-numa",
                "node,memdev=mem",
            ])
            .args(["-global", "virtio-mmio.force-legacy=false"])
            .arg("-chardev")
            .arg(format!("socket,id=store,path={}", socket.display()))
            .args(["-device", "vhost-user-fs-device,chardev=store,tag=nixstore"])
            .arg("-netdev")
            .arg(format!("user,id=net0,hostfwd=tcp:127.0.0.1:{port}-:8080"))
            .args(["-device", "virtio-net-device,netdev=net0"])
            .arg("-serial")
            .arg(format!("file:{}", serial.display()))
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp.display()))
            .arg("-kernel")
            .arg(toplevel.join("kernel"))
            .arg("-initrd")
            .arg(toplevel.join("initrd"))
            .arg("-append")
            .arg(format!(
                "init={}/init {} tsc_early_khz={}",
                toplevel.display(),
                params.trim(),
                host_tsc_khz()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start qemu"),
    );

    let console = || fs::read_to_string(&serial).unwrap_or_default();
    let init_line = format!("procurator-guest: init {}", toplevel.display());
    let boot_deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let text = console();
        assert!(
            !text.contains("boot failed"),
            "guest failed to boot:\n{text}"
        );
        if text.contains("procurator-guest: booted") && text.contains(&init_line) {
            break;
        }
        if let Some(status) = qemu.0.try_wait().expect("wait for qemu") {
            panic!("qemu exited with {status} before the guest booted:\n{text}");
        }
        assert!(
            Instant::now() < boot_deadline,
            "no `{init_line}` on the console after 120 s:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let booted = started.elapsed();
    let (status, body) = poll("HTTP from the guest", Duration::from_secs(60), || {
        http_get(port, "/healthz").filter(|(s, _)| *s == 200)
    });
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    eprintln!(
        "microVM: init after {booted:?}, healthy after {:?}",
        started.elapsed()
    );

    // The ACPI power button powers the guest off, and QEMU exits with it.
    let stream = UnixStream::connect(&qmp).expect("connect QMP");
    let mut reader = BufReader::new(stream.try_clone().expect("clone QMP stream"));
    let mut writer = stream;
    let mut greeting = String::new();
    reader.read_line(&mut greeting).expect("QMP greeting");
    for command in ["qmp_capabilities", "system_powerdown"] {
        writeln!(writer, "{{\"execute\":\"{command}\"}}").expect("QMP write");
    }
    let status = poll(
        "QEMU to exit after the power button",
        Duration::from_secs(30),
        || qemu.0.try_wait().expect("wait for qemu"),
    );
    assert!(status.success(), "qemu exited with {status}");
    assert!(
        console().contains("procurator-guest: powering off"),
        "{}",
        console()
    );
}

/// The host's TSC frequency. Under TCG the guest's TSC runs at the host's rate, and on a busy
/// host the guest kernel's calibration against the emulated PIT fails ("tsc: Unable to
/// calibrate against PIT"; microvm has no HPET or PM timer to fall back on); the boot then hangs
/// before the console in most attempts. Telling the kernel the frequency skips the calibration.
fn host_tsc_khz() -> u64 {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").expect("read /proc/cpuinfo");
    let mhz: f64 = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("cpu MHz")?
                .split(':')
                .nth(1)?
                .trim()
                .parse()
                .ok()
        })
        .expect("/proc/cpuinfo has a `cpu MHz` line");
    (mhz * 1000.0) as u64
}

/// A cluster repository with its own copy of the library and one cluster module, to see what
/// the built-in evaluator says about it.
struct ClusterRepo(TempDir);

impl ClusterRepo {
    fn new() -> ClusterRepo {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_dir(&repo().join("nix/lib"), &dir.path().join("lib"));
        fs::write(
            dir.path().join("flake.nix"),
            r#"{
  outputs = { self }: ((import ./lib).evalCluster { modules = [ ./cluster.nix ]; }).outputs;
}
"#,
        )
        .expect("write flake.nix");
        ClusterRepo(dir)
    }

    /// Evaluates blueprintJSON with `cluster.vms.web = { <web> }` and a small valid package.
    fn eval(&self, web: &str) -> Result<serde_json::Value, String> {
        let module = format!(
            r#"{{ procurator, ... }}:
let pkg = procurator.mkProcessService {{ name = "web"; script = "exec httpd -f -p 8080"; }};
in {{
  cluster.name = "t";
  cluster.vms.web = {{ package = pkg; {web} }};
}}
"#
        );
        fs::write(self.0.path().join("cluster.nix"), module).expect("write cluster.nix");
        git_add_all(self.0.path());
        let out = nix_eval_json(self.0.path(), "blueprintJSON", &[]);
        if out.status.success() {
            Ok(serde_json::from_slice(&out.stdout).expect("JSON"))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

#[test]
fn evaluator_refuses_bad_clusters_with_a_sentence_naming_the_option() {
    let repo = ClusterRepo::new();
    let ok = repo
        .eval("cpu = 2; memory = 64;")
        .expect("a valid cluster evaluates");
    assert_eq!(ok["vms"]["web"]["cpu"], 2);
    assert_eq!(ok["vms"]["web"]["memoryMb"], 64);
    assert_eq!(ok["vms"]["web"]["exec"], "bin/web");
    assert_eq!(ok["vms"]["web"]["role"], "web");

    // Type and unknown-option errors come from the evaluator and also name the file.
    let typed = [
        ("cpu = 0;", "cluster.vms.web.cpu: expected an integer between 1 and 1024, got 0"),
        ("cpus = 2;", "cluster.vms.web.cpus: no such option"),
        ("memory = \"1G\";", "cluster.vms.web.memory: expected an integer between 16 and 16777216, got \"1G\""),
        (
            "deployment.backend = \"docker\";",
            "cluster.vms.web.deployment.backend: expected one of \"process\", \"qemu\", \"cloud-hypervisor\", got \"docker\"",
        ),
        (
            "deployment.healthChecks = [ { port = 8080; path = \"healthz\"; } ];",
            "cluster.vms.web.deployment.healthChecks.[0].path: expected a string matching the pattern /.*, got \"healthz\"",
        ),
    ];
    for (web, want) in typed {
        let err = repo
            .eval(web)
            .err()
            .unwrap_or_else(|| panic!("`{web}` was accepted"));
        assert!(err.contains(want), "`{web}`: {err:?} lacks {want:?}");
        assert!(
            err.contains("cluster.nix"),
            "`{web}`: {err:?} does not name the file"
        );
    }
    // Rules across options come from the blueprint builder.
    let related = [
        (
            "deployment.healthChecks = [ { type = \"http\"; path = \"/healthz\"; } ];",
            "cluster.vms.web.deployment.healthChecks.[0]: the http check needs `port`",
        ),
        (
            "ports.a.guest = 80; ports.b = { guest = 81; host = 80; };",
            "cluster.vms.web.ports: host port 80 is forwarded twice",
        ),
        (
            "exec = \"../bin/sh\";",
            "cluster.vms.web.exec: `../bin/sh` must be a path relative",
        ),
        (
            "deployment.backend = \"qemu\"; nixos = { };",
            "set one of `package` and `nixos`, not both",
        ),
        (
            "deployment.rollout.strategy = \"canary\";",
            "cluster.vms.web.deployment.rollout: a canary rollout needs canaryCount of at least 1",
        ),
    ];
    for (web, want) in related {
        let err = repo
            .eval(web)
            .err()
            .unwrap_or_else(|| panic!("`{web}` was accepted"));
        assert!(err.contains(want), "`{web}`: {err:?} lacks {want:?}");
    }
}

#[test]
fn evaluator_names_what_is_missing_for_vms_and_bad_names() {
    let repo = ClusterRepo::new();
    fs::write(
        repo.0.path().join("cluster.nix"),
        "{ cluster.vms.Web_1 = { }; }\n",
    )
    .expect("write");
    git_add_all(repo.0.path());
    let err = String::from_utf8_lossy(&nix_eval_json(repo.0.path(), "blueprintJSON", &[]).stderr)
        .into_owned();
    assert!(
        err.contains("cluster.vms.Web_1: VM names must be 1-63 characters"),
        "{err}"
    );

    for (module, want) in [
        (
            "{ cluster.vms.web = { }; }",
            "cluster.vms.web: a process workload needs `package`",
        ),
        (
            "{ cluster.vms.vm.deployment.backend = \"qemu\"; }",
            "cluster.vms.vm: a qemu VM needs `package`",
        ),
        (
            "{ cluster.vms.vm = { deployment.backend = \"qemu\"; nixos = { }; }; }",
            "cluster.vms.vm.nixos: building a NixOS VM needs nixpkgs",
        ),
        ("{ pkgs, ... }: { }", "asks for the argument `pkgs`"),
        ("{ cluster.nodes = 3; }", "cluster.nodes: no such option"),
    ] {
        fs::write(repo.0.path().join("cluster.nix"), module).expect("write");
        git_add_all(repo.0.path());
        let out = nix_eval_json(repo.0.path(), "blueprintJSON", &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(want),
            "`{module}`: {err:?} lacks {want:?}"
        );
    }
}

#[test]
fn service_modules_parse_and_render_their_units() {
    let mut files = Vec::new();
    for dir in ["nix/lib", "nix/modules", "nix/tests", "example"] {
        for entry in fs::read_dir(repo().join(dir)).expect("read dir").flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "nix") {
                files.push(path);
            }
        }
    }
    files.push(repo().join("nix/flake.nix"));
    assert!(files.len() >= 15, "too few .nix files found: {files:?}");
    for file in &files {
        run_ok(nix_command("nix-instantiate").arg("--parse").arg(file));
    }

    // Without nixpkgs the modules are evaluated against a stub of the NixOS options they set.
    let package = "/nix/store/00000000000000000000000000000000-procurator";
    let config = format!(
        r#"{{ services.procurator = {{
  control-plane = {{ enable = true; package = "{package}"; openFirewall = true; httpListen = "127.0.0.1:7080"; }};
  worker = {{ enable = true; package = "{package}"; master = "10.0.0.1:7000"; cacheUrl = "http://10.0.0.1:5000";
             cachePublicKey = "cache-1:abc="; labels.zone = "a"; }};
  cache = {{ enable = true; package = "{package}"; signingKeyFile = "/run/keys/cache"; }};
  ci = {{ enable = true; package = "{package}"; }};
  repohub = {{ enable = true; package = "{package}"; openFirewall = true; }};
}}; }}"#
    );
    let eval = |config: &str| {
        run(nix_command("nix-instantiate")
            .args(["--eval", "--strict", "--json"])
            .arg(repo().join("nix/tests/service-modules.nix"))
            .args(["--arg", "config", config]))
    };
    let out = eval(&config);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let system: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let exec = |unit: &str| {
        system["systemd"]["services"][unit]["serviceConfig"]["ExecStart"]
            .as_str()
            .unwrap_or_else(|| panic!("no unit {unit}"))
            .to_string()
    };
    assert_eq!(
        exec("procurator-control-plane"),
        format!("{package}/bin/pcr-control-plane --listen 0.0.0.0:7000 --db /var/lib/procurator-control-plane/control-plane.db --lease-ms 10000 --heartbeat-ms 2000 --http 127.0.0.1:7080")
    );
    assert!(exec("procurator-worker").contains("--master 10.0.0.1:7000 --id node-1"));
    assert!(exec("procurator-worker").contains("--label zone=a"));
    assert!(exec("procurator-cache").contains("serve --listen 0.0.0.0:5000"));
    assert!(exec("procurator-ci").contains("bin/pcr-ci"));
    assert!(exec("procurator-repohub").contains("--listen 0.0.0.0:3001"));
    assert_eq!(
        system["networking"]["firewall"]["allowedTCPPorts"],
        serde_json::json!([7000, 7080, 3001])
    );
    let worker = &system["systemd"]["services"]["procurator-worker"]["serviceConfig"];
    assert_eq!(
        worker["KillMode"], "process",
        "VMs must outlive a worker restart"
    );
    assert!(worker["DeviceAllow"].to_string().contains("/dev/kvm"));
    assert_eq!(system["nix"]["settings"]["narinfo-cache-negative-ttl"], 0);
    let cp = &system["systemd"]["services"]["procurator-control-plane"]["serviceConfig"];
    assert_eq!(
        (&cp["DynamicUser"], &cp["ProtectSystem"]),
        (&serde_json::json!(true), &serde_json::json!("strict"))
    );

    let bad = format!(
        r#"{{ services.procurator.control-plane = {{ enable = true; package = "{package}"; leaseMs = 1000; heartbeatMs = 2000; }}; }}"#
    );
    let err = String::from_utf8_lossy(&eval(&bad).stderr).into_owned();
    assert!(
        err.contains("heartbeatMs must be shorter than leaseMs"),
        "{err}"
    );
    let unknown = r#"{ services.procurator.worker.masterAddress = "x"; }"#;
    let err = String::from_utf8_lossy(&eval(unknown).stderr).into_owned();
    assert!(
        err.contains("services.procurator.worker.masterAddress: no such option"),
        "{err}"
    );
}

#[test]
fn example_kernel_copy_is_deterministic_so_the_lock_holds_across_machines() {
    let Some(first) = example_kernel() else {
        return;
    };
    let Some(second) = example_kernel() else {
        return;
    };
    let hash = |dir: &TempDir| {
        run_ok(
            nix_command("nix")
                .args(["hash", "path"])
                .arg(dir.path().join("kernel")),
        )
    };
    assert_eq!(hash(&first), hash(&second));
    let dir = first.path().join("kernel");
    let load = fs::read_to_string(dir.join("modules.load")).expect("modules.load");
    let modules: Vec<&str> = load.lines().collect();
    let position = |m: &str| modules.iter().position(|x| *x == m);
    // Dependencies come before the modules that need them.
    for (dependency, module) in [("virtio.ko", "virtio_mmio.ko"), ("fuse.ko", "virtiofs.ko")] {
        if let (Some(d), Some(m)) = (position(dependency), position(module)) {
            assert!(d < m, "{dependency} must load before {module}: {modules:?}");
        }
    }
    assert!(dir.join("vmlinuz").exists());
    // nix locks a path input by its newest mtime too: everything is at 1.
    let mtime = |p: &Path| {
        use std::os::unix::fs::MetadataExt;
        fs::symlink_metadata(p).expect("stat").mtime()
    };
    assert_eq!(mtime(&dir), 1);
    assert_eq!(mtime(&dir.join("vmlinuz")), 1);
}
