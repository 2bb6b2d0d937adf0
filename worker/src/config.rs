//! What this machine can run: probing backends and building the drivers for them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use schema::model::Backend;

use crate::driver::cloud_hypervisor::{linux_boots, probe, CloudHypervisorDriver};
use crate::driver::find_program;
use crate::driver::process::ProcessDriver;
use crate::driver::qemu::{kvm_boots, Accel, QemuDriver};
use crate::reconcile::Drivers;

/// How QEMU should accelerate guests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccelChoice {
    /// KVM when a test boot under KVM succeeds, TCG otherwise.
    Auto,
    Kvm,
    Tcg,
}

impl std::str::FromStr for AccelChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(AccelChoice::Auto),
            "kvm" => Ok(AccelChoice::Kvm),
            "tcg" => Ok(AccelChoice::Tcg),
            _ => Err(format!(
                "unknown accelerator `{s}`; expected auto, kvm or tcg"
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct BackendSettings {
    /// Only these backends, instead of probing.
    pub only: Option<Vec<Backend>>,
    pub qemu: String,
    pub virtiofsd: PathBuf,
    pub cloud_hypervisor: String,
    pub accel: AccelChoice,
}

impl Default for BackendSettings {
    fn default() -> Self {
        BackendSettings {
            only: None,
            qemu: "qemu-system-x86_64".into(),
            virtiofsd: PathBuf::from("/usr/lib/qemu/virtiofsd"),
            cloud_hypervisor: "cloud-hypervisor".into(),
            accel: AccelChoice::Auto,
        }
    }
}

/// A kernel to try KVM with: the host's own.
fn host_kernel() -> Option<PathBuf> {
    let release = rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned();
    let own = PathBuf::from(format!("/boot/vmlinuz-{release}"));
    if own.is_file() {
        return Some(own);
    }
    std::fs::read_dir("/boot")
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
}

/// How long the cloud-hypervisor probe guest may take to boot and power off (it takes tens of
/// milliseconds; the margin is for a loaded host).
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the host's Linux kernel gets to print its banner under cloud-hypervisor (tens of
/// milliseconds under working KVM).
const LINUX_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds the drivers this worker offers. Returns them with one line per backend saying what
/// was found, for the start-up log.
pub fn drivers(settings: &BackendSettings) -> (Drivers, Vec<String>) {
    let wanted = |b: Backend| settings.only.as_ref().is_none_or(|only| only.contains(&b));
    let mut drivers = Drivers::default();
    let mut notes = Vec::new();
    if wanted(Backend::Process) {
        let process = ProcessDriver::new();
        notes.push(format!("process: available; {}", process.limits_note()));
        drivers.insert(Arc::new(process));
    }
    let virtiofsd = settings.virtiofsd.is_file();
    if wanted(Backend::Qemu) {
        match find_program(&settings.qemu) {
            Some(qemu) if virtiofsd => {
                let accel = choose_accel(&qemu, settings.accel);
                notes.push(format!(
                    "qemu: {} with {}",
                    qemu.display(),
                    accel_note(accel, settings.accel)
                ));
                drivers.insert(Arc::new(QemuDriver {
                    qemu,
                    virtiofsd: settings.virtiofsd.clone(),
                    accel,
                }));
            }
            Some(_) => notes.push(format!(
                "qemu: unavailable, virtiofsd not found at {}",
                settings.virtiofsd.display()
            )),
            None => notes.push(format!("qemu: unavailable, `{}` not found", settings.qemu)),
        }
    }
    if wanted(Backend::CloudHypervisor) {
        match find_program(&settings.cloud_hypervisor) {
            Some(binary) if virtiofsd => match probe(&binary, PROBE_TIMEOUT) {
                Ok(took) => {
                    let linux = host_kernel()
                        .is_some_and(|kernel| linux_boots(&binary, &kernel, LINUX_PROBE_TIMEOUT));
                    notes.push(format!(
                        "cloud-hypervisor: {} (a probe guest booted in {} ms; {})",
                        binary.display(),
                        took.as_millis(),
                        if linux {
                            "Linux kernels boot under this host's KVM"
                        } else {
                            "the host's Linux kernel did not boot under this host's KVM, so VMs \
                             with a Linux kernel are refused: only PVH guests run"
                        }
                    ));
                    drivers.insert(Arc::new(CloudHypervisorDriver {
                        binary,
                        virtiofsd: settings.virtiofsd.clone(),
                        linux_boots: linux,
                    }));
                }
                Err(why) => notes.push(format!(
                    "cloud-hypervisor: unavailable, {}: {why}",
                    binary.display()
                )),
            },
            Some(_) => notes.push(format!(
                "cloud-hypervisor: unavailable, virtiofsd not found at {}",
                settings.virtiofsd.display()
            )),
            None => notes.push(format!(
                "cloud-hypervisor: unavailable, `{}` not found",
                settings.cloud_hypervisor
            )),
        }
    }
    (drivers, notes)
}

fn choose_accel(qemu: &Path, choice: AccelChoice) -> Accel {
    match choice {
        AccelChoice::Kvm => Accel::Kvm,
        AccelChoice::Tcg => Accel::Tcg,
        AccelChoice::Auto => match host_kernel() {
            Some(kernel) if kvm_boots(qemu, &kernel, Duration::from_secs(3)) => Accel::Kvm,
            _ => Accel::Tcg,
        },
    }
}

fn accel_note(accel: Accel, choice: AccelChoice) -> &'static str {
    match (accel, choice) {
        (Accel::Kvm, AccelChoice::Auto) => "KVM (a test boot under KVM succeeded)",
        (Accel::Kvm, _) => "KVM (as configured)",
        (Accel::Tcg, AccelChoice::Auto) => {
            "TCG (KVM is missing or a test boot under it did not reach the kernel's panic within 3 s, e.g. nested PVM)"
        }
        (Accel::Tcg, _) => "TCG (as configured)",
    }
}
