//! Starting child processes that do not outlive the process that started them.

use std::process::Stdio;

/// Makes the child get SIGKILL when the thread that spawned it ends — however the parent dies,
/// `kill -9` included. Takes a std command; pass `tokio_cmd.as_std_mut()` for a tokio one.
///
/// The signal fires when the spawning *thread* ends, not the process: spawn from a thread that
/// lives as long as the child should (the main thread, or a long-lived worker thread).
#[allow(unsafe_code)]
pub fn die_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec; prctl(PR_SET_PDEATHSIG) is
    // async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
                .map_err(std::io::Error::from)
        });
    }
}

/// A tokio command with the settings a service's children get: no stdin, killed when dropped,
/// and killed when the thread that started it ends (a service that is killed takes its builds
/// with it instead of leaving them to finish for nobody).
pub fn command(program: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    die_with_parent(cmd.as_std_mut());
    cmd
}
