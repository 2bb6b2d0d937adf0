//! Building a small bootable toplevel (kernel, initrd, kernel-params, init) with real nix.
//!
//! The image follows the worker's VM contract exactly as a NixOS toplevel does: the worker
//! boots `kernel` + `initrd` with `init=<toplevel>/init <kernel-params>` and shares
//! `/nix/store` read-only over virtiofs with tag `nixstore`. Nothing is downloaded: the flake
//! (no inputs, `builtins.derivation`, builder `/bin/sh`) is written to a temporary folder with
//! the host's Debian cloud kernel, its virtio/virtiofs/ACPI-button modules and the static
//! busybox copied in, and `nix build` makes:
//!
//! - `initrd`: busybox, the modules, and a stage-1 `/init` that loads the modules, mounts the
//!   store share at `/nix/store` and execs the `init=` from the kernel command line;
//! - `init` (stage 2): prints [`BOOT_LINE`], prints the content of a separate store path (the
//!   greeting, so reading it proves the virtiofs share works), then waits for the ACPI power
//!   button and powers off — which is how the worker's clean shutdown is observed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Printed by the stage-2 init on the serial console.
pub const BOOT_LINE: &str = "procurator-test: stage 2 running";
/// The greeting store path's content, printed by the guest after reading it over virtiofs.
pub const GREETING: &str = "hello from the nix store over virtiofs";
/// Printed when the guest saw the power button and is powering off.
pub const POWEROFF_LINE: &str = "procurator-test: power button pressed, powering off";

/// Modules the guest loads, in dependency order. The Debian cloud kernel builds virtio-mmio,
/// virtiofs and the ACPI button as modules.
const MODULES: &[&str] = &[
    "drivers/virtio/virtio_ring.ko",
    "drivers/virtio/virtio.ko",
    "drivers/virtio/virtio_mmio.ko",
    "fs/fuse/fuse.ko",
    "fs/fuse/virtiofs.ko",
    "drivers/acpi/button.ko",
    "drivers/input/evdev.ko",
];

/// The nix settings tests need on a machine without nixpkgs or a reachable cache.
pub const NIX_CONFIG: &str =
    "experimental-features = nix-command flakes\nsubstituters =\nsandbox = false";

#[derive(Debug, Clone)]
pub struct VmImage {
    /// The toplevel store path.
    pub toplevel: String,
    /// The store path whose content the guest prints.
    pub greeting: String,
}

/// A kernel image and the module tree of the same release, from the host.
fn host_kernel() -> (PathBuf, PathBuf) {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/boot")
        .expect("/boot is readable")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .collect();
    candidates.sort();
    for kernel in candidates.into_iter().rev() {
        let name = kernel.file_name().map(|n| n.to_string_lossy().into_owned());
        let release = name.as_deref().and_then(|n| n.strip_prefix("vmlinuz-"));
        if let Some(release) = release {
            let modules = PathBuf::from(format!("/lib/modules/{release}/kernel"));
            if modules.is_dir() {
                return (kernel, modules);
            }
        }
    }
    panic!(
        "no /boot/vmlinuz-* with matching /lib/modules/<release>; install linux-image-cloud-amd64"
    )
}

const STAGE1: &str = r#"#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_mmio fuse virtiofs button evdev; do
  insmod /lib/modules/$m.ko || echo "procurator-test: insmod $m failed"
done
mount -t virtiofs -o ro nixstore /nix/store || echo "procurator-test: mounting the store failed"
init=$(sed -n 's/.*init=\([^ ]*\).*/\1/p' /proc/cmdline)
echo "procurator-test: stage 1 done, exec $init"
exec $init
"#;

const FLAKE: &str = r#"{
  outputs = { self }:
    let
      system = "x86_64-linux";
      greeting = builtins.derivation {
        name = "procurator-test-greeting";
        inherit system;
        builder = "/bin/sh";
        args = [ "-c" "echo '@GREETING@' > $out" ];
      };
      initrd = builtins.derivation {
        name = "procurator-test-initrd";
        inherit system;
        builder = "/bin/sh";
        tools = ./tools;
        stage1 = ./stage1.sh;
        modules = ./modules;
        args = [ "-c" ''
          set -e
          bb=$tools/busybox
          $bb mkdir -p root/bin root/dev root/proc root/sys root/tmp root/nix/store root/lib/modules
          $bb cp $bb root/bin/busybox
          $bb chmod 755 root/bin/busybox
          for a in sh mount insmod mkdir cat echo sed ls dd head poweroff sleep; do
            $bb ln -s busybox root/bin/$a
          done
          $bb cp $modules/*.ko root/lib/modules/
          $bb cp $stage1 root/init
          $bb chmod 755 root/init
          cd root
          $bb find . | $bb cpio -o -H newc | $bb gzip -1 > $out
        '' ];
      };
      toplevel = builtins.derivation {
        name = "procurator-test-vm";
        inherit system initrd greeting;
        builder = "/bin/sh";
        tools = ./tools;
        kernel = ./kernel;
        args = [ "-c" ''
          set -e
          bb=$tools/busybox
          $bb mkdir $out
          $bb cp $kernel $out/kernel
          $bb ln -s $initrd $out/initrd
          echo "procurator.test=1" > $out/kernel-params
          {
            echo '#!/bin/sh'
            echo '# Open the power button first: a press after the lines below is then queued.'
            echo 'ev=$(ls /dev/input/event* 2>/dev/null | head -n 1)'
            echo 'if [ -n "$ev" ]; then exec 3< $ev; fi'
            echo 'echo "@BOOT_LINE@ from $0"'
            echo "echo \"procurator-test: store file says: \$(cat $greeting)\""
            echo 'if [ -n "$ev" ]; then dd of=/dev/null bs=24 count=1 <&3 2>/dev/null; else while true; do sleep 3600; done; fi'
            echo 'echo "@POWEROFF_LINE@"'
            echo 'poweroff -f'
          } > $out/init
          $bb chmod 755 $out/init
        '' ];
      };
    in {
      packages.${system} = {
        default = toplevel;
        inherit greeting;
      };
    };
}
"#;

/// Builds (once per test process) the test toplevel. Panics with nix's output when the build
/// fails: a test without its image cannot say anything useful.
pub fn build_test_vm() -> VmImage {
    static IMAGE: OnceLock<VmImage> = OnceLock::new();
    IMAGE.get_or_init(build).clone()
}

fn build() -> VmImage {
    let (kernel, modules) = host_kernel();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::copy(&kernel, root.join("kernel")).expect("copy kernel");
    // In a folder of its own so its store path ends in `/busybox`: busybox picks the applet
    // from its own name.
    std::fs::create_dir(root.join("tools")).expect("tools dir");
    std::fs::copy("/bin/busybox", root.join("tools/busybox"))
        .expect("copy /bin/busybox (install busybox-static)");
    std::fs::create_dir(root.join("modules")).expect("modules dir");
    for module in MODULES {
        let src = modules.join(module);
        let name = Path::new(module).file_name().expect("module file name");
        std::fs::copy(&src, root.join("modules").join(name))
            .unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
    }
    std::fs::write(root.join("stage1.sh"), STAGE1).expect("write stage1");
    let flake = FLAKE
        .replace("@GREETING@", GREETING)
        .replace("@BOOT_LINE@", BOOT_LINE)
        .replace("@POWEROFF_LINE@", POWEROFF_LINE);
    std::fs::write(root.join("flake.nix"), flake).expect("write flake");
    let toplevel = nix_build(root, "default");
    let greeting = nix_build(root, "greeting");
    VmImage { toplevel, greeting }
}

/// `nix build --json --no-link path:<dir>#<attr>`, returning the output path.
pub fn nix_build(flake_dir: &Path, attr: &str) -> String {
    let output = Command::new("nix")
        .env("NIX_CONFIG", NIX_CONFIG)
        .args(["build", "--json", "--no-link"])
        .arg(format!("path:{}#{attr}", flake_dir.display()))
        .output()
        .expect("run nix build");
    assert!(
        output.status.success(),
        "nix build of {attr} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("nix build --json output");
    json[0]["outputs"]["out"]
        .as_str()
        .expect("an `out` output")
        .to_string()
}
