//! A thread with its own single-threaded tokio runtime and `LocalSet`: the home of work whose
//! futures are `!Send` (Cap'n Proto clients) inside a service that is otherwise multi-threaded.

use std::future::Future;

/// Starts thread `name` running `task()` to completion on a current-thread runtime inside a
/// `LocalSet`. The runtime is built here, so failing to build it is this call's error rather
/// than a silent thread. `task` is called on the new thread, so its future need not be `Send`.
pub fn spawn_local_thread<F, Fut>(
    name: String,
    task: F,
) -> std::io::Result<std::thread::JoinHandle<()>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new().name(name).spawn(move || {
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, task());
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_a_non_send_future_to_completion() {
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = spawn_local_thread("test".into(), move || async move {
            let local = std::rc::Rc::new(7);
            let v = tokio::task::spawn_local(async move { *local }).await;
            let _ = tx.send(v.ok());
        })
        .expect("spawn");
        handle.join().expect("join");
        assert_eq!(rx.recv().ok().flatten(), Some(7));
    }
}
