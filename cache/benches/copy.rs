//! Side-by-side figures for the cache, in one run on this machine:
//!
//! 1. `nix copy --from` of a closure of many paths (~200 MB by default) out of pcr-cache,
//!    out of the same closure as a `file://` binary cache read by nix itself (the floor), and
//!    out of nginx serving that `file://` directory statically;
//! 2. narinfo lookups per second under `wrk`, pcr-cache against nginx on the same narinfos;
//! 3. peak memory (VmHWM) of a pcr-cache process receiving, then serving, one NAR of 2 GB.
//!
//! Run: `cargo bench -p cache --bench copy` (needs `nix`, `nginx` and `wrk` on PATH).
//! Sizes: PCR_BENCH_PATHS (default 100), PCR_BENCH_PATH_KB (2048), PCR_BENCH_BIG_MB (2048,
//! 0 skips part 3), PCR_BENCH_ROUNDS (5), PCR_BENCH_WRK_SECONDS (5).
//! Store paths it builds stay in /nix/store and are reused by later runs, except the big one,
//! which is deleted at the end unless PCR_BENCH_KEEP_BIG=1.

use std::io::{BufRead, BufReader, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cache::signing::SecretKey;

const NIX_CONFIG: &str =
    "experimental-features = nix-command flakes\nsubstituters =\nsandbox = false\n";
const TOKEN: &str = "bench-token";

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn nix(xdg: &Path) -> Command {
    let mut cmd = Command::new("nix");
    cmd.env("NIX_CONFIG", NIX_CONFIG).env("XDG_CACHE_HOME", xdg);
    cmd
}

fn check(what: &str, out: Output) -> Output {
    if !out.status.success() {
        eprintln!("{what} failed:\n{}", String::from_utf8_lossy(&out.stderr));
        std::process::exit(1);
    }
    out
}

fn timed(what: &str, cmd: &mut Command) -> Duration {
    let start = Instant::now();
    check(what, cmd.output().unwrap_or_else(|e| panic!("{what}: {e}")));
    start.elapsed()
}

/// Stops its child on drop, so that no server outlives the benchmark: SIGTERM first, which
/// nginx's master needs to take its workers down with it, then SIGKILL if it lingers.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Starts `pcr-cache serve` on a free port; returns the child and its URL.
fn start_cache(storage: &Path, key: &Path) -> (Guard, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pcr-cache"))
        .args(["serve", "--listen", "127.0.0.1:0", "--gc-interval", "0"])
        .arg("--storage")
        .arg(storage)
        .arg("--signing-key")
        .arg(key)
        .args(["--upload-token", TOKEN])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("pcr-cache starts");
    let stdout = child.stdout.take().expect("stdout");
    let guard = Guard(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("address line");
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .expect("pcr-cache prints its address")
        .to_owned();
    (guard, url)
}

fn start_nginx(root: &Path, work: &Path) -> (Guard, String) {
    let port = free_port();
    std::fs::create_dir_all(work.join("logs")).expect("nginx dir");
    let conf = work.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off;\nworker_processes auto;\npid {work}/nginx.pid;\nerror_log {work}/logs/error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  tcp_nodelay on;\n\
             keepalive_requests 100000;\n\
             client_body_temp_path {work}/body;\n  proxy_temp_path {work}/proxy;\n\
             fastcgi_temp_path {work}/fastcgi;\n  uwsgi_temp_path {work}/uwsgi;\n  scgi_temp_path {work}/scgi;\n\
             server {{ listen 127.0.0.1:{port}; root {root}; }}\n}}\n",
            work = work.display(),
            root = root.display(),
        ),
    )
    .expect("nginx.conf");
    let child = Command::new("nginx")
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(work)
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx starts (apt-get install nginx-light)");
    let url = format!("http://127.0.0.1:{port}");
    wait_for(&format!("127.0.0.1:{port}"));
    (Guard(child), url)
}

fn wait_for(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "{addr} never accepted connections"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A flake with `paths` blobs of `kb` KiB of base64 text (random, so ~75 % compressible like
/// much of a real closure) and a root that references them all.
fn write_flake(dir: &Path, paths: u64, kb: u64, big_mb: u64) {
    let flake = format!(
        r#"{{
  outputs = {{ self }}:
    let
      system = "x86_64-linux";
      blob = i: builtins.derivation {{
        name = "pcr-bench-blob-${{toString i}}-{kb}k";
        inherit system;
        builder = "/bin/sh";
        args = [ "-c" "/bin/mkdir $out && /usr/bin/head -c {raw} /dev/urandom | /usr/bin/base64 > $out/data" ];
      }};
      blobs = builtins.genList blob {paths};
    in {{
      packages.${{system}} = {{
        closure = builtins.derivation {{
          name = "pcr-bench-closure-{paths}x{kb}k";
          inherit system;
          builder = "/bin/sh";
          args = [ "-c" "echo ${{toString blobs}} > $out" ];
        }};
        big = builtins.derivation {{
          name = "pcr-bench-big-{big_mb}m";
          inherit system;
          builder = "/bin/sh";
          args = [ "-c" "/usr/bin/head -c {big_bytes} /dev/urandom > $out" ];
        }};
      }};
    }};
}}
"#,
        raw = kb * 1024 * 3 / 4,
        big_bytes = big_mb * 1024 * 1024,
    );
    std::fs::write(dir.join("flake.nix"), flake).expect("flake.nix");
}

fn build(xdg: &Path, flake: &Path, attr: &str) -> String {
    let out = check(
        "nix build",
        nix(xdg)
            .args(["build", "--json", "--no-link"])
            .arg(format!("path:{}#{attr}", flake.display()))
            .output()
            .expect("nix build"),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    v[0]["outputs"]["out"]
        .as_str()
        .expect("out path")
        .to_owned()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

fn wrk(url: &str, hashes: &[String], seconds: u64, work: &Path) -> (f64, String) {
    let script = work.join("narinfos.lua");
    let list: Vec<String> = hashes.iter().map(|h| format!("\"/{h}.narinfo\"")).collect();
    std::fs::write(
        &script,
        format!(
            "local paths = {{{}}}\nlocal i = 0\nrequest = function()\n  i = i % #paths + 1\n  \
             return wrk.format(\"GET\", paths[i])\nend\n",
            list.join(",")
        ),
    )
    .expect("wrk script");
    let out = check(
        "wrk",
        Command::new("wrk")
            .args(["-t1", "-c32", &format!("-d{seconds}s"), "--latency", "-s"])
            .arg(&script)
            .arg(url)
            .output()
            .expect("wrk runs (apt-get install wrk)"),
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    let p99 = text
        .lines()
        .find(|l| l.trim_start().starts_with("99%"))
        .map(|l| l.trim().trim_start_matches("99%").trim().to_owned())
        .unwrap_or_default();
    if text.contains("Non-2xx") {
        eprintln!("wrk saw errors against {url}:\n{text}");
    }
    (rps, p99)
}

fn closure_of(xdg: &Path, path: &str) -> (Vec<String>, u64) {
    let out = check(
        "nix path-info",
        nix(xdg)
            .args(["path-info", "--json", "-r", path])
            .output()
            .expect("nix path-info"),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let items = v.as_array().expect("list");
    let size = items.iter().filter_map(|i| i["narSize"].as_u64()).sum();
    let hashes = items
        .iter()
        .filter_map(|i| i["path"].as_str())
        .map(|p| p["/nix/store/".len().."/nix/store/".len() + 32].to_owned())
        .collect();
    (hashes, size)
}

fn main() {
    // `cargo bench` passes `--bench`; there is nothing to filter.
    let paths = env_num("PCR_BENCH_PATHS", 100);
    let kb = env_num("PCR_BENCH_PATH_KB", 2048);
    let big_mb = env_num("PCR_BENCH_BIG_MB", 2048);
    let rounds = env_num("PCR_BENCH_ROUNDS", 5).max(1);
    let wrk_seconds = env_num("PCR_BENCH_WRK_SECONDS", 5);

    let work = tempfile::Builder::new()
        .prefix("pcr-cache-bench")
        .tempdir()
        .expect("tempdir");
    let w = work.path();
    let xdg = w.join("xdg");
    let flake = w.join("flake");
    std::fs::create_dir_all(&flake).expect("flake dir");
    write_flake(&flake, paths, kb, big_mb);

    let key = SecretKey::generate("bench-1").expect("key");
    let key_file = w.join("bench-1.secret");
    std::fs::write(&key_file, key.to_file_contents()).expect("key file");
    let public = key.public().to_string();
    let netrc = w.join("netrc");
    std::fs::write(&netrc, format!("machine 127.0.0.1 password {TOKEN}\n")).expect("netrc");

    println!(
        "# pcr-cache benchmark ({} cores)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let t = Instant::now();
    let root = build(&xdg, &flake, "closure");
    let (hashes, nar_bytes) = closure_of(&xdg, &root);
    println!(
        "closure: {} paths, {:.0} MB of NAR (built in {:.1} s)",
        hashes.len(),
        nar_bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    // Populate both caches with the same zstd-compressed, signed closure.
    let (server, url) = start_cache(&w.join("pcr-storage"), &key_file);
    let push_ours = timed(
        "push to pcr-cache",
        nix(&xdg)
            .args(["copy", "--to", &format!("{url}?compression=zstd")])
            .args(["--option", "netrc-file"])
            .arg(&netrc)
            .arg(&root),
    );
    let file_cache = w.join("file-cache");
    let push_file = timed(
        "push to file://",
        nix(&xdg)
            .args([
                "copy",
                "--to",
                &format!(
                    "file://{}?compression=zstd&secret-key={}",
                    file_cache.display(),
                    key_file.display()
                ),
            ])
            .arg(&root),
    );
    println!(
        "push (nix copy --to, zstd): pcr-cache {:.2} s, file:// {:.2} s",
        push_ours.as_secs_f64(),
        push_file.as_secs_f64()
    );
    let (_nginx, nginx_url) = start_nginx(&file_cache, &w.join("nginx"));

    // 1. Pulls, round-robin so that every source sees the same machine state.
    let sources = [
        (
            "file:// (nix, floor)",
            format!("file://{}", file_cache.display()),
        ),
        ("pcr-cache", url.clone()),
        ("nginx static", nginx_url.clone()),
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); sources.len()];
    for round in 0..rounds {
        for (i, (_, src)) in sources.iter().enumerate() {
            let dest = w.join(format!("dest-{i}-{round}"));
            let d = timed(
                "nix copy --from",
                nix(&w.join(format!("xdg-pull-{i}-{round}")))
                    .args(["copy", "--from", src, "--to"])
                    .arg(&dest)
                    .args(["--option", "trusted-public-keys", &public])
                    .args(["--option", "narinfo-cache-negative-ttl", "0"])
                    .arg(&root),
            );
            times[i].push(d.as_secs_f64());
            let _ = std::fs::remove_dir_all(&dest);
        }
    }
    let floor = median(times[0].clone());
    println!(
        "\n## nix copy --from, {} paths / {:.0} MB, median of {rounds}",
        hashes.len(),
        nar_bytes as f64 / 1e6
    );
    println!("| source | median s | best s | MB/s (median) | × file:// (median) |");
    println!("|---|---|---|---|---|");
    for (i, (name, _)) in sources.iter().enumerate() {
        let m = median(times[i].clone());
        let best = times[i].iter().copied().fold(f64::INFINITY, f64::min);
        println!(
            "| {name} | {m:.2} | {best:.2} | {:.0} | {:.2} |",
            nar_bytes as f64 / 1e6 / m,
            m / floor
        );
    }

    // 2. narinfo lookups.
    if wrk_seconds > 0 {
        let (ours_rps, ours_p99) = wrk(&url, &hashes, wrk_seconds, w);
        let (nginx_rps, nginx_p99) = wrk(&nginx_url, &hashes, wrk_seconds, w);
        println!(
            "\n## narinfo lookups, wrk -t1 -c32 -d{wrk_seconds}s over {} narinfos",
            hashes.len()
        );
        println!("| server | requests/s | p99 latency | × nginx |");
        println!("|---|---|---|---|");
        println!(
            "| pcr-cache | {ours_rps:.0} | {ours_p99} | {:.2} |",
            ours_rps / nginx_rps
        );
        println!("| nginx static | {nginx_rps:.0} | {nginx_p99} | 1.00 |");
    }
    println!(
        "\npcr-cache peak RSS after pushes, pulls and lookups: {:.1} MB",
        vm_hwm_kib(server.0.id()) as f64 / 1024.0
    );
    drop(server);

    // 3. One big NAR: upload, then serve, each by a fresh process so that VmHWM is that phase's.
    if big_mb > 0 {
        let t = Instant::now();
        let big = build(&xdg, &flake, "big");
        println!(
            "\n## one {big_mb} MB NAR (built in {:.1} s)",
            t.elapsed().as_secs_f64()
        );
        let storage = w.join("big-storage");
        let (receiver, url) = start_cache(&storage, &key_file);
        let push = timed(
            "push big",
            nix(&xdg)
                .args(["copy", "--to", &format!("{url}?compression=zstd")])
                .args(["--option", "netrc-file"])
                .arg(&netrc)
                .arg(&big),
        );
        let upload_hwm = vm_hwm_kib(receiver.0.id());
        drop(receiver);
        let (sender, url) = start_cache(&storage, &key_file);
        let start_hwm = vm_hwm_kib(sender.0.id());
        let hash = &big["/nix/store/".len().."/nix/store/".len() + 32];
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (bytes, took) = runtime.block_on(async {
            let narinfo = reqwest::get(format!("{url}/{hash}.narinfo"))
                .await
                .expect("narinfo")
                .text()
                .await
                .expect("narinfo text");
            let nar_url = narinfo
                .lines()
                .find_map(|l| l.strip_prefix("URL: "))
                .expect("URL line")
                .to_owned();
            let start = Instant::now();
            let mut response = reqwest::get(format!("{url}/{nar_url}")).await.expect("nar");
            let mut bytes = 0u64;
            while let Some(chunk) = response.chunk().await.expect("chunk") {
                bytes += chunk.len() as u64;
            }
            (bytes, start.elapsed())
        });
        let serve_hwm = vm_hwm_kib(sender.0.id());
        println!(
            "push with nix copy: {:.1} s; pcr-cache peak RSS while receiving it: {:.1} MB",
            push.as_secs_f64(),
            upload_hwm as f64 / 1024.0
        );
        println!(
            "download of the {:.0} MB file: {:.1} s ({:.0} MB/s); pcr-cache peak RSS: {:.1} MB at start, {:.1} MB after serving it",
            bytes as f64 / 1e6,
            took.as_secs_f64(),
            bytes as f64 / 1e6 / took.as_secs_f64(),
            start_hwm as f64 / 1024.0,
            serve_hwm as f64 / 1024.0
        );
        drop(sender);
        if std::env::var("PCR_BENCH_KEEP_BIG").as_deref() != Ok("1") {
            let _ = nix(&xdg).args(["store", "delete", &big]).output();
        }
    }
    let _ = std::io::stdout().flush();
}
