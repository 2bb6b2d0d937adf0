//! The cluster without a process or a file: a [`Store`] in memory that can be told to fail,
//! which also shows what another backend has to provide.

use std::cell::{Cell, RefCell};

use super::*;
use crate::store::{Batch, Snapshot, StoredGeneration};

#[derive(Clone, Default)]
struct MemoryStore {
    generations: Rc<RefCell<Vec<StoredGeneration>>>,
    commits: Rc<Cell<usize>>,
    fail: Rc<Cell<bool>>,
}

impl Store for MemoryStore {
    fn load(&self) -> crate::store::Result<Snapshot> {
        Ok(Snapshot::default())
    }

    fn apply(&mut self, batch: &Batch) -> crate::store::Result<()> {
        if self.fail.get() {
            return Err(StoreError::Backend("the disk is full".into()));
        }
        if let Some(g) = &batch.generation {
            self.generations.borrow_mut().push(g.clone());
        }
        self.commits.set(self.commits.get() + 1);
        Ok(())
    }

    fn generations(&self, limit: u32) -> crate::store::Result<Vec<StoredGeneration>> {
        let mut all = self.generations.borrow().clone();
        all.reverse();
        all.truncate(limit as usize);
        Ok(all)
    }

    fn generation(&self, generation: u64) -> crate::store::Result<Option<StoredGeneration>> {
        Ok(self
            .generations
            .borrow()
            .iter()
            .find(|g| g.generation == generation)
            .cloned())
    }

    fn events(&self, _: u64, _: u32) -> crate::store::Result<Vec<Event>> {
        Ok(Vec::new())
    }
}

fn worker(id: &str) -> WorkerInfo {
    WorkerInfo {
        id: id.into(),
        cpu: 4,
        memory_mb: 4096,
        backends: vec![Backend::Process],
        ..Default::default()
    }
}

fn web(replicas: u32) -> Vec<VmSpec> {
    let mut spec = VmSpec::process("web", "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-web");
    spec.replicas = replicas;
    vec![spec]
}

fn cluster() -> (Cluster, MemoryStore) {
    let store = MemoryStore::default();
    let cluster = Cluster::load(store.clone(), Config::default()).expect("load");
    (cluster, store)
}

#[test]
fn publish_places_instances_and_tells_their_worker() {
    let (mut c, _) = cluster();
    c.register(worker("a")).expect("register");
    let (summary, outcome) = c
        .publish("abc", 1, "i1", web(2), ClusterSettings::default())
        .expect("publish");
    assert_eq!((summary.placed, summary.unplaced), (2, 0));
    assert_eq!(outcome.notify, vec![("a".to_string(), summary.revision)]);
    let a = c.assignment("a", 0).expect("known").expect("changed");
    let ids: Vec<&str> = a.instances.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["web-0", "web-1"]);
    assert_eq!(c.assignment("a", a.revision).expect("known"), None);
}

#[test]
fn a_same_generation_retry_is_idempotent_and_an_older_one_is_stale() {
    let (mut c, store) = cluster();
    c.publish("abc", 2, "i2", web(1), ClusterSettings::default())
        .expect("publish");
    let commits = store.commits.get();
    let (again, _) = c
        .publish("abc", 2, "i2", web(1), ClusterSettings::default())
        .expect("retry");
    assert!(!again.changed);
    assert_eq!(store.commits.get(), commits, "a retry writes nothing");
    let e = c
        .publish("abc", 1, "i1", web(1), ClusterSettings::default())
        .expect_err("stale");
    assert_eq!(e.code, ErrorCode::Stale);
    assert_eq!(
        e.message,
        "publishState rejected: generation 1 is not newer than active generation 2"
    );
}

#[test]
fn a_failed_commit_changes_nothing_in_memory() {
    let (mut c, store) = cluster();
    c.register(worker("a")).expect("register");
    let before = (c.version(), c.revision(), c.last_seq(), c.status());
    store.fail.set(true);
    let e = c
        .publish("abc", 1, "i1", web(1), ClusterSettings::default())
        .expect_err("store fails");
    assert_eq!(e.code, ErrorCode::Internal);
    assert_eq!(c.active_generation(), 0);
    assert_eq!(
        (c.version(), c.revision(), c.last_seq(), c.status()),
        before
    );
    store.fail.set(false);
    c.publish("abc", 1, "i1", web(1), ClusterSettings::default())
        .expect("publish once the store works");
    assert_eq!(c.active_generation(), 1);
}

#[test]
fn rollback_needs_an_earlier_good_generation() {
    let (mut c, _) = cluster();
    let e = c.rollback(0).expect_err("nothing published");
    assert_eq!(e.code, ErrorCode::NotFound);
    c.publish("abc", 1, "i1", web(1), ClusterSettings::default())
        .expect("publish");
    let e = c.rollback(1).expect_err("already active");
    assert_eq!(e.message, "generation 1 is already active");
    c.publish("def", 2, "i2", web(1), ClusterSettings::default())
        .expect("publish");
    let (what, _) = c.rollback(0).expect("rollback");
    assert_eq!(
        what,
        "generation 1 is active again; generation 2 is rolled back"
    );
    assert_eq!(c.active_generation(), 1);
}
