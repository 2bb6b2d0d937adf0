//! Everything the TUI knows and every decision a key press makes, with no terminal in sight.
//!
//! [`App`] holds the last data the control plane sent, which screen is shown, the selection
//! and filter of every list, the input mode and the connection state. [`App::handle_key`]
//! turns one key into a state change (and, for confirmed actions, an [`Action`] for the live
//! feed to run); [`App::apply`] folds one [`Update`] from the feed in. Drawing only reads this
//! state, so every behaviour here is unit-tested without a terminal.

use std::collections::{HashMap, VecDeque};

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use schema::model::*;

/// How many events the TUI keeps; the control plane keeps them all.
pub const EVENT_MEMORY: usize = 1_000;
/// How long a message at the bottom stays.
const FLASH_MS: u64 = 6_000;

/// The lists one can switch between with `:name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum View {
    Overview,
    Workers,
    Vms,
    Generations,
    Events,
    Pipelines,
}

impl View {
    pub const ALL: [View; 6] = [
        View::Overview,
        View::Workers,
        View::Vms,
        View::Generations,
        View::Events,
        View::Pipelines,
    ];

    pub fn name(self) -> &'static str {
        match self {
            View::Overview => "overview",
            View::Workers => "workers",
            View::Vms => "vms",
            View::Generations => "generations",
            View::Events => "events",
            View::Pipelines => "pipelines",
        }
    }

    /// Other names operators type out of habit (k9s calls workers nodes, VMs pods).
    fn aliases(self) -> &'static [&'static str] {
        match self {
            View::Overview => &["o", "ov", "cluster", "status", "home"],
            View::Workers => &["w", "wo", "worker", "nodes", "node", "no"],
            View::Vms => &["v", "vm", "instances", "instance", "pods", "po"],
            View::Generations => &["g", "gen", "gens", "generation", "history"],
            View::Events => &["e", "ev", "event"],
            View::Pipelines => &["p", "pl", "pipeline", "ci"],
        }
    }

    /// A view by its name, an alias, or a prefix that names only one view.
    pub fn parse(input: &str) -> Option<View> {
        let input = input.trim().to_ascii_lowercase();
        if input.is_empty() {
            return None;
        }
        if let Some(v) = View::ALL
            .into_iter()
            .find(|v| v.name() == input || v.aliases().contains(&input.as_str()))
        {
            return Some(v);
        }
        let mut prefixed = View::ALL
            .into_iter()
            .filter(|v| v.name().starts_with(&input));
        match (prefixed.next(), prefixed.next()) {
            (Some(v), None) => Some(v),
            _ => None,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What a detail pane shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Worker(String),
    /// An instance and the worker it is placed on (empty when unplaced): the worker's report
    /// carries the instance's console log.
    Instance {
        id: String,
        worker: String,
    },
    Generation(u64),
    Event(u64),
    Pipeline(u64),
}

impl Target {
    pub fn title(&self) -> String {
        match self {
            Target::Worker(id) => format!("worker {id}"),
            Target::Instance { id, .. } => format!("vm {id}"),
            Target::Generation(n) => format!("generation {n}"),
            Target::Event(seq) => format!("event {seq}"),
            Target::Pipeline(id) => format!("pipeline {id}"),
        }
    }
}

/// Data fetched for a detail pane.
#[derive(Debug, Clone)]
pub enum Detail {
    /// A worker with its reports (for worker and instance panes).
    Worker(Box<WorkerStatus>),
    Generation(Box<(GenerationInfo, Blueprint)>),
    Pipeline(Box<PipelineRun>),
}

#[derive(Debug, Clone)]
pub enum DetailData {
    Loading,
    Loaded(Detail),
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct DetailPane {
    pub target: Target,
    pub data: DetailData,
    pub scroll: u16,
    /// Lines the pane had when last drawn, so `G` and paging know where the end is.
    pub lines: u16,
    pub height: u16,
}

/// Operator actions; each one asks for confirmation first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Cordon(String),
    Uncordon(String),
    Drain(String),
    Rollback(u64),
    /// Lets a canary rollout of the VM with this name continue to every instance.
    Promote(String),
    /// Restarts the instance with this id where it runs.
    Restart(String),
}

impl Action {
    /// The question the confirmation dialog asks, and what will happen.
    pub fn question(&self) -> (String, String) {
        match self {
            Action::Cordon(w) => (
                format!("Cordon worker {w}?"),
                "No new instances will be placed on it; what runs there keeps running.".into(),
            ),
            Action::Uncordon(w) => (
                format!("Uncordon worker {w}?"),
                "The scheduler may place instances on it again.".into(),
            ),
            Action::Drain(w) => (
                format!("Drain worker {w}?"),
                "It is cordoned and every instance on it is moved to other workers.".into(),
            ),
            Action::Rollback(g) => (
                format!("Roll back to generation {g}?"),
                format!(
                    "Generation {g} becomes active again and is rolled out; the generation it \
                     replaces is marked rolled back and is not rolled out again by itself."
                ),
            ),
            Action::Promote(vm) => (
                format!("Promote the canary of {vm}?"),
                "The rollout continues from the canaries to every instance of the VM.".into(),
            ),
            Action::Restart(id) => (
                format!("Restart {id}?"),
                "It is stopped and started again where it runs, with the same spec.".into(),
            ),
        }
    }

    /// `cordoning w1`: shown while the call is in flight.
    pub fn progress(&self) -> String {
        match self {
            Action::Cordon(w) => format!("cordoning {w}…"),
            Action::Uncordon(w) => format!("uncordoning {w}…"),
            Action::Drain(w) => format!("draining {w}…"),
            Action::Rollback(g) => format!("rolling back to generation {g}…"),
            Action::Promote(vm) => format!("promoting {vm}…"),
            Action::Restart(id) => format!("restarting {id}…"),
        }
    }
}

/// The connection to the control plane, as the header shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    Connecting {
        attempt: u32,
    },
    Live {
        since_ms: u64,
    },
    Lost {
        error: String,
        retry_at_ms: u64,
        attempt: u32,
    },
}

/// One message from the live feed.
#[derive(Debug, Clone)]
pub enum Update {
    Link(Link),
    Status(Box<ClusterStatus>),
    /// The specs of the active generation: labels for filters, specs for VM panes.
    Blueprint(u64, Box<Blueprint>),
    Generations(Vec<GenerationInfo>),
    Events(Vec<Event>),
    Detail(Target, Result<Detail, String>),
    Pipelines(Result<Vec<Pipeline>, String>),
    ActionDone(Action, Result<String, String>),
}

pub use super::list::{Filter, ListState, RowFields};

/// How the fields of a row of a view are read; the views know (`views::fields`), and hand
/// that knowledge to [`App::new`] so the state does not depend on its drawing.
pub type FieldsOf = for<'a> fn(&'a App, View, usize) -> RowFields<'a>;

/// A CI run as the pipelines list shows it.
pub use schema::ci::PipelineSummary as Pipeline;

/// A run with its steps and the tail of its log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineRun {
    pub detail: schema::ci::PipelineDetail,
    pub log: Vec<schema::ci::LogLine>,
}

/// Input mode: what the next key means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// Typing a view name after `:`.
    Command(String),
    /// Typing a filter after `/`.
    Filter(String),
    Help,
    Confirm(Action),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Screen {
    List(View),
    Detail(Target),
}

/// Where Esc goes back to, and the filter to put back when a drill-down set one.
#[derive(Debug, Clone)]
struct Back {
    screen: Screen,
    restore: Option<(View, Filter)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    pub text: String,
    pub error: bool,
    pub until_ms: u64,
}

/// Counts the overview shows, computed once per status update instead of once per frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub workers_by_state: [(WorkerState, usize); 4],
    pub phases: Vec<(Phase, usize)>,
    pub unplaced: usize,
    pub drifted: usize,
    pub unhealthy: usize,
    pub cpu_total: u64,
    pub cpu_free: i64,
    pub memory_total_mb: u64,
    pub memory_free_mb: i64,
}

impl Summary {
    fn of(status: &ClusterStatus) -> Summary {
        let mut s = Summary {
            workers_by_state: [
                (WorkerState::Ready, 0),
                (WorkerState::Cordoned, 0),
                (WorkerState::Draining, 0),
                (WorkerState::Lost, 0),
            ],
            ..Summary::default()
        };
        for w in &status.workers {
            if let Some(slot) = s.workers_by_state.iter_mut().find(|(st, _)| *st == w.state) {
                slot.1 += 1;
            }
            if w.state != WorkerState::Lost {
                s.cpu_total += w.info.cpu as u64;
                s.cpu_free += w.free_cpu;
                s.memory_total_mb += w.info.memory_mb;
                s.memory_free_mb += w.free_memory_mb;
            }
        }
        const ORDER: [Phase; 9] = [
            Phase::Running,
            Phase::Starting,
            Phase::Fetching,
            Phase::Pending,
            Phase::Stopping,
            Phase::Stopped,
            Phase::Failed,
            Phase::CrashLoop,
            Phase::Unknown,
        ];
        let mut counts = [0usize; 9];
        for i in &status.instances {
            if i.worker_id.is_empty() {
                s.unplaced += 1;
                continue;
            }
            if let Some(k) = ORDER.iter().position(|p| *p == i.phase) {
                counts[k] += 1;
            }
            if i.drifted {
                s.drifted += 1;
            }
            if i.health == Health::Unhealthy {
                s.unhealthy += 1;
            }
        }
        s.phases = ORDER
            .iter()
            .zip(counts)
            .filter(|(p, n)| *n > 0 || matches!(p, Phase::Running))
            .map(|(p, n)| (*p, n))
            .collect();
        s
    }
}

/// The whole state of the TUI.
pub struct App {
    /// Reads a row's filterable fields (see [`FieldsOf`]).
    fields_of: FieldsOf,
    /// The clock every relative time is computed from; set before each draw, fixed in tests.
    pub now_ms: u64,
    pub master: String,
    /// The CI service's URL; without one the pipelines view is off.
    pub ci: Option<String>,
    screen: Screen,
    back: Vec<Back>,
    mode: Mode,
    lists: [ListState; 6],
    pub link: Link,
    pub flash: Option<Flash>,
    status: Option<ClusterStatus>,
    /// When `status` arrived: uptimes grow from there between updates.
    pub status_at_ms: u64,
    summary: Summary,
    blueprint: Option<(u64, Blueprint)>,
    /// VM name → index into the blueprint's specs.
    spec_index: HashMap<String, usize>,
    generations: Vec<GenerationInfo>,
    events: VecDeque<Event>,
    last_seq: u64,
    pipelines: Option<Result<Vec<Pipeline>, String>>,
    pub detail: Option<DetailPane>,
    in_flight: Vec<Action>,
    quit: bool,
    /// Rows a page holds in the list being shown (set by the drawing code).
    pub page: usize,
}

impl App {
    pub fn new(master: &str, now_ms: u64, fields_of: FieldsOf) -> App {
        App {
            fields_of,
            now_ms,
            master: master.to_string(),
            ci: None,
            screen: Screen::List(View::Overview),
            back: Vec::new(),
            mode: Mode::Normal,
            lists: Default::default(),
            link: Link::Connecting { attempt: 0 },
            flash: None,
            status: None,
            status_at_ms: 0,
            summary: Summary::default(),
            blueprint: None,
            spec_index: HashMap::new(),
            generations: Vec::new(),
            events: VecDeque::new(),
            last_seq: 0,
            pipelines: None,
            detail: None,
            in_flight: Vec::new(),
            quit: false,
            page: 10,
        }
    }

    // ---- reading ----

    pub fn screen(&self) -> &Screen {
        &self.screen
    }

    pub fn mode(&self) -> &Mode {
        &self.mode
    }

    pub fn should_quit(&self) -> bool {
        self.quit
    }

    pub fn status(&self) -> Option<&ClusterStatus> {
        self.status.as_ref()
    }

    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    pub fn generations(&self) -> &[GenerationInfo] {
        &self.generations
    }

    pub fn events(&self) -> &VecDeque<Event> {
        &self.events
    }

    pub fn pipelines(&self) -> Option<&Result<Vec<Pipeline>, String>> {
        self.pipelines.as_ref()
    }

    pub fn list(&self, view: View) -> &ListState {
        &self.lists[view.index()]
    }

    pub fn list_mut(&mut self, view: View) -> &mut ListState {
        &mut self.lists[view.index()]
    }

    pub fn in_flight(&self) -> &[Action] {
        &self.in_flight
    }

    /// The spec of a VM in the active generation.
    pub fn spec(&self, vm_name: &str) -> Option<&VmSpec> {
        let (_, bp) = self.blueprint.as_ref()?;
        self.spec_index.get(vm_name).and_then(|i| bp.vms.get(*i))
    }

    pub fn instance(&self, id: &str) -> Option<&InstanceStatus> {
        self.status
            .as_ref()?
            .instances
            .iter()
            .find(|i| i.instance_id == id)
    }

    pub fn worker(&self, id: &str) -> Option<&WorkerStatus> {
        self.status
            .as_ref()?
            .workers
            .iter()
            .find(|w| w.info.id == id)
    }

    /// The event with this sequence number, if still remembered.
    pub fn event(&self, seq: u64) -> Option<&Event> {
        let first = self.events.front()?.seq;
        // Events are kept in sequence order, mostly without gaps: try the direct index first.
        let guess = seq.checked_sub(first).map(|d| d as usize);
        match guess.and_then(|g| self.events.get(g)) {
            Some(e) if e.seq == seq => Some(e),
            _ => self.events.iter().find(|e| e.seq == seq),
        }
    }

    /// The detail the live feed should keep fresh, if a detail pane is open.
    pub fn detail_target(&self) -> Option<&Target> {
        self.detail.as_ref().map(|d| &d.target)
    }

    /// The view a list screen shows, or the list a detail pane was opened from.
    pub fn current_view(&self) -> Option<View> {
        match &self.screen {
            Screen::List(v) => Some(*v),
            Screen::Detail(_) => None,
        }
    }

    // ---- updates from the live feed ----

    pub fn apply(&mut self, update: Update) {
        match update {
            Update::Link(link) => {
                if let Link::Lost { .. } = link {
                    // Nothing in flight can finish on a dead connection.
                    for a in self.in_flight.drain(..) {
                        self.flash = Some(Flash {
                            text: format!(
                                "{} interrupted: the connection was lost; check the result once reconnected",
                                a.progress().trim_end_matches('…')
                            ),
                            error: true,
                            until_ms: self.now_ms + FLASH_MS,
                        });
                    }
                }
                self.link = link;
            }
            Update::Status(status) => {
                let keep = [
                    self.selected_key(View::Workers),
                    self.selected_key(View::Vms),
                ];
                self.summary = Summary::of(&status);
                self.status = Some(*status);
                self.status_at_ms = self.now_ms;
                let [workers, vms] = keep;
                self.rebuild_keeping(View::Workers, workers);
                self.rebuild_keeping(View::Vms, vms);
            }
            Update::Blueprint(generation, bp) => {
                self.spec_index = bp
                    .vms
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (s.name.clone(), i))
                    .collect();
                self.blueprint = Some((generation, *bp));
                // Label filters on VMs read the specs.
                self.rebuild(View::Vms);
            }
            Update::Generations(list) => {
                let keep = self.selected_key(View::Generations);
                self.generations = list;
                self.rebuild_keeping(View::Generations, keep);
            }
            Update::Events(batch) => {
                // At the top, the list follows the newest event; elsewhere the selection
                // stays on the event it was on.
                let keep = match self.lists[View::Events.index()].selected {
                    0 => None,
                    _ => self.selected_key(View::Events),
                };
                let mut added = false;
                for e in batch {
                    // A reconnect replays from the last seen sequence; never show one twice.
                    if e.seq <= self.last_seq {
                        continue;
                    }
                    self.last_seq = e.seq;
                    self.events.push_back(e);
                    added = true;
                }
                while self.events.len() > EVENT_MEMORY {
                    self.events.pop_front();
                }
                if added {
                    self.rebuild_keeping(View::Events, keep);
                }
            }
            Update::Detail(target, result) => {
                if let Some(pane) = self.detail.as_mut().filter(|p| p.target == target) {
                    match result {
                        Ok(d) => pane.data = DetailData::Loaded(d),
                        // Keep what was shown when a refresh fails; say why only if nothing was.
                        Err(e) => {
                            if !matches!(pane.data, DetailData::Loaded(_)) {
                                pane.data = DetailData::Failed(e);
                            }
                        }
                    }
                }
            }
            Update::Pipelines(result) => {
                let keep = self.selected_key(View::Pipelines);
                self.pipelines = Some(result);
                self.rebuild_keeping(View::Pipelines, keep);
            }
            Update::ActionDone(action, result) => {
                self.in_flight.retain(|a| *a != action);
                let (text, error) = match result {
                    Ok(text) => (text, false),
                    Err(text) => (text, true),
                };
                self.flash = Some(Flash {
                    text,
                    error,
                    until_ms: self.now_ms + FLASH_MS,
                });
            }
        }
    }

    /// The identity of the selected item, to find it again after the data changed.
    fn selected_key(&self, view: View) -> Option<String> {
        self.lists[view.index()]
            .selected_row()
            .and_then(|row| self.row_key(view, row))
    }

    /// Recomputes which rows of `view` pass its filter, keeping the same item selected.
    /// Only for changes of the filter, not of the data (see [`App::rebuild_keeping`]).
    fn rebuild(&mut self, view: View) {
        let keep = self.selected_key(view);
        self.rebuild_keeping(view, keep);
    }

    /// Recomputes the rows of `view` and selects the item `keep` (taken before the data
    /// changed) if it is still there; otherwise the selection stays at the same position.
    fn rebuild_keeping(&mut self, view: View, keep: Option<String>) {
        let filter = self.lists[view.index()].filter.clone();
        let (rows, total) = {
            let n = self.source_len(view);
            // Events read newest first.
            let order: Box<dyn Iterator<Item = usize>> = if view == View::Events {
                Box::new((0..n).rev())
            } else {
                Box::new(0..n)
            };
            let rows: Vec<usize> = if filter.is_empty() {
                order.collect()
            } else {
                order
                    .filter(|&i| filter.matches(&(self.fields_of)(self, view, i)))
                    .collect()
            };
            (rows, n)
        };
        let selected = keep.and_then(|key| {
            rows.iter()
                .position(|&r| self.row_key(view, r).as_deref() == Some(key.as_str()))
        });
        let list = &mut self.lists[view.index()];
        list.rows = rows;
        list.total = total;
        match selected {
            Some(i) => list.selected = i,
            None => list.select(list.selected),
        }
    }

    fn source_len(&self, view: View) -> usize {
        match view {
            View::Overview => 0,
            View::Workers => self.status.as_ref().map_or(0, |s| s.workers.len()),
            View::Vms => self.status.as_ref().map_or(0, |s| s.instances.len()),
            View::Generations => self.generations.len(),
            View::Events => self.events.len(),
            View::Pipelines => match &self.pipelines {
                Some(Ok(p)) => p.len(),
                _ => 0,
            },
        }
    }

    /// A stable identity for a row, so the selection follows the item across refreshes.
    fn row_key(&self, view: View, row: usize) -> Option<String> {
        match view {
            View::Overview => None,
            View::Workers => self
                .status
                .as_ref()?
                .workers
                .get(row)
                .map(|w| w.info.id.clone()),
            View::Vms => self
                .status
                .as_ref()?
                .instances
                .get(row)
                .map(|i| i.instance_id.clone()),
            View::Generations => self.generations.get(row).map(|g| g.generation.to_string()),
            View::Events => self.events.get(row).map(|e| e.seq.to_string()),
            View::Pipelines => match &self.pipelines {
                Some(Ok(p)) => p.get(row).map(|p| p.id.to_string()),
                _ => None,
            },
        }
    }

    /// The detail target for a row of a list.
    fn target_of(&self, view: View, row: usize) -> Option<Target> {
        match view {
            View::Overview => None,
            View::Workers => self
                .status
                .as_ref()?
                .workers
                .get(row)
                .map(|w| Target::Worker(w.info.id.clone())),
            View::Vms => self
                .status
                .as_ref()?
                .instances
                .get(row)
                .map(|i| Target::Instance {
                    id: i.instance_id.clone(),
                    worker: i.worker_id.clone(),
                }),
            View::Generations => self
                .generations
                .get(row)
                .map(|g| Target::Generation(g.generation)),
            View::Events => self.events.get(row).map(|e| Target::Event(e.seq)),
            View::Pipelines => match &self.pipelines {
                Some(Ok(p)) => p.get(row).map(|p| Target::Pipeline(p.id)),
                _ => None,
            },
        }
    }

    // ---- keys ----

    /// Handles one key. Returns the action to run when the key confirmed one.
    pub fn handle_key(&mut self, key: KeyEvent) -> Option<Action> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        // Raw mode turns Ctrl-C into a key: it always quits, whatever the mode.
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            self.quit = true;
            return None;
        }
        match self.mode.clone() {
            Mode::Help => {
                if matches!(
                    key.code,
                    KeyCode::Esc | KeyCode::Char('?') | KeyCode::Char('q') | KeyCode::Enter
                ) {
                    self.mode = Mode::Normal;
                }
                None
            }
            Mode::Confirm(action) => match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') => {
                    self.mode = Mode::Normal;
                    self.in_flight.push(action.clone());
                    self.flash = Some(Flash {
                        text: action.progress(),
                        error: false,
                        until_ms: self.now_ms + FLASH_MS,
                    });
                    Some(action)
                }
                KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc | KeyCode::Char('q') => {
                    self.mode = Mode::Normal;
                    self.say("cancelled", false);
                    None
                }
                _ => None,
            },
            Mode::Command(mut buf) => {
                match key.code {
                    KeyCode::Esc => self.mode = Mode::Normal,
                    KeyCode::Enter => {
                        self.mode = Mode::Normal;
                        self.run_command(&buf);
                    }
                    KeyCode::Backspace => {
                        if buf.pop().is_none() {
                            self.mode = Mode::Normal;
                        } else {
                            self.mode = Mode::Command(buf);
                        }
                    }
                    KeyCode::Tab => {
                        if let Some(done) = complete_command(&buf) {
                            self.mode = Mode::Command(done.to_string());
                        }
                    }
                    KeyCode::Char(c) if !c.is_control() => {
                        buf.push(c);
                        self.mode = Mode::Command(buf);
                    }
                    _ => {}
                }
                None
            }
            Mode::Filter(mut buf) => {
                match key.code {
                    KeyCode::Esc => {
                        self.mode = Mode::Normal;
                        self.set_filter("");
                    }
                    KeyCode::Enter | KeyCode::Down | KeyCode::Up => {
                        self.mode = Mode::Normal;
                    }
                    KeyCode::Backspace => {
                        buf.pop();
                        // Live: the list narrows as one types, as in k9s.
                        self.set_filter(&buf);
                        self.mode = Mode::Filter(buf);
                    }
                    KeyCode::Char('u') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                        self.set_filter("");
                        self.mode = Mode::Filter(String::new());
                    }
                    KeyCode::Char(c) if !c.is_control() => {
                        buf.push(c);
                        self.set_filter(&buf);
                        self.mode = Mode::Filter(buf);
                    }
                    _ => {}
                }
                None
            }
            Mode::Normal => match self.screen.clone() {
                Screen::List(view) => self.list_key(view, key),
                Screen::Detail(target) => self.detail_key(target, key),
            },
        }
    }

    /// Pasted text goes into the prompt being typed, never into keys that act.
    pub fn paste(&mut self, text: &str) {
        let clean: String = text.chars().filter(|c| !c.is_control()).collect();
        match self.mode.clone() {
            Mode::Command(mut buf) => {
                buf.push_str(&clean);
                self.mode = Mode::Command(buf);
            }
            Mode::Filter(mut buf) => {
                buf.push_str(&clean);
                self.set_filter(&buf);
                self.mode = Mode::Filter(buf);
            }
            _ => {}
        }
    }

    fn say(&mut self, text: impl Into<String>, error: bool) {
        self.flash = Some(Flash {
            text: text.into(),
            error,
            until_ms: self.now_ms + FLASH_MS,
        });
    }

    fn run_command(&mut self, input: &str) {
        let input = input.trim();
        if input.is_empty() {
            return;
        }
        if matches!(input, "q" | "q!" | "quit" | "exit") {
            self.quit = true;
            return;
        }
        match View::parse(input) {
            Some(v) => self.switch_to(v),
            None => {
                let names: Vec<&str> = View::ALL.iter().map(|v| v.name()).collect();
                self.say(
                    format!("no view named {input:?}; try {}", names.join(", ")),
                    true,
                )
            }
        }
    }

    /// Shows a list; the screen left becomes where Esc goes back to.
    pub fn switch_to(&mut self, view: View) {
        if self.screen == Screen::List(view) {
            return;
        }
        if view == View::Pipelines && self.ci.is_none() {
            self.say(
                "no CI service: start with --ci URL or PROCURATOR_CI to see pipelines",
                true,
            );
            return;
        }
        self.push_back(None);
        self.screen = Screen::List(view);
        self.detail = None;
    }

    fn push_back(&mut self, restore: Option<(View, Filter)>) {
        self.back.push(Back {
            screen: self.screen.clone(),
            restore,
        });
        // Switching views back and forth must not grow without bound.
        if self.back.len() > 50 {
            self.back.remove(0);
        }
    }

    fn go_back(&mut self) {
        let Some(back) = self.back.pop() else {
            return;
        };
        if let Some((view, filter)) = back.restore {
            self.lists[view.index()].filter = filter;
            self.rebuild(view);
        }
        self.screen = back.screen;
        self.detail = match &self.screen {
            Screen::Detail(t) => Some(DetailPane {
                target: t.clone(),
                data: DetailData::Loading,
                scroll: 0,
                lines: 0,
                height: 0,
            }),
            Screen::List(_) => None,
        };
    }

    /// Sets the filter of the list on screen.
    fn set_filter(&mut self, raw: &str) {
        if let Some(view) = self.current_view() {
            self.lists[view.index()].filter = Filter::parse(raw);
            self.rebuild(view);
        }
    }

    fn open(&mut self, target: Target) {
        self.push_back(None);
        self.detail = Some(DetailPane {
            target: target.clone(),
            data: DetailData::Loading,
            scroll: 0,
            lines: 0,
            height: 0,
        });
        self.screen = Screen::Detail(target);
    }

    fn list_key(&mut self, view: View, key: KeyEvent) -> Option<Action> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let page = self.page.max(1) as isize;
        let list = &mut self.lists[view.index()];
        match key.code {
            KeyCode::Char('q') => self.quit = true,
            KeyCode::Char(':') => self.mode = Mode::Command(String::new()),
            KeyCode::Char('/') if view != View::Overview => {
                self.mode = Mode::Filter(list.filter.raw().to_string())
            }
            KeyCode::Char('?') => self.mode = Mode::Help,
            KeyCode::Char('j') | KeyCode::Down => list.move_by(1),
            KeyCode::Char('k') | KeyCode::Up => list.move_by(-1),
            KeyCode::Char('g') | KeyCode::Home => list.select(0),
            KeyCode::Char('G') | KeyCode::End => list.select(usize::MAX),
            KeyCode::PageDown => list.move_by(page),
            KeyCode::PageUp => list.move_by(-page),
            KeyCode::Char('f') | KeyCode::Char('d') if ctrl => list.move_by(page),
            KeyCode::Char('b') | KeyCode::Char('u') if ctrl => list.move_by(-page),
            KeyCode::Tab => self.cycle(view, 1),
            KeyCode::BackTab => self.cycle(view, -1),
            KeyCode::Enter | KeyCode::Char('l') | KeyCode::Right => {
                if let Some(target) = list.selected_row().and_then(|r| self.target_of(view, r)) {
                    self.open(target);
                }
            }
            KeyCode::Esc | KeyCode::Char('h') | KeyCode::Left => {
                if !list.filter.is_empty() {
                    self.set_filter("");
                } else {
                    self.go_back();
                }
            }
            KeyCode::Char(c) => {
                let target = list.selected_row().and_then(|r| self.target_of(view, r));
                if let Some(target) = target {
                    self.action_key(&target, c);
                }
            }
            _ => {}
        }
        None
    }

    /// Tab moves through the views in order; the pipelines view only when CI is configured.
    fn cycle(&mut self, from: View, step: isize) {
        let views: Vec<View> = View::ALL
            .into_iter()
            .filter(|v| *v != View::Pipelines || self.ci.is_some())
            .collect();
        let at = views.iter().position(|v| *v == from).unwrap_or(0) as isize;
        let n = views.len() as isize;
        let next = views[((at + step) % n + n) as usize % views.len()];
        // Tabbing is not navigation history: replace, do not push.
        self.screen = Screen::List(next);
    }

    /// Opens the confirmation dialog for the action bound to `key` on `target`, if any.
    fn action_key(&mut self, target: &Target, key: char) {
        let action = match (target, key) {
            (Target::Worker(id), 'c') => match self.worker(id).map(|w| w.state) {
                Some(WorkerState::Cordoned) | Some(WorkerState::Draining) => {
                    Some(Action::Uncordon(id.clone()))
                }
                _ => Some(Action::Cordon(id.clone())),
            },
            (Target::Worker(id), 'd') => Some(Action::Drain(id.clone())),
            (Target::Instance { id, .. }, 'p') => {
                let vm = self.instance(id).map(|i| i.vm_name.clone());
                let waiting = vm.as_ref().is_some_and(|vm| {
                    self.status.as_ref().is_some_and(|s| {
                        s.rollouts.iter().any(|r| {
                            r.vm_name == *vm && r.phase == RolloutPhase::WaitingForPromotion
                        })
                    })
                });
                match vm {
                    Some(vm) if waiting => Some(Action::Promote(vm)),
                    Some(vm) => {
                        self.say(
                            format!("{vm} has no canary rollout waiting for promotion"),
                            true,
                        );
                        None
                    }
                    None => None,
                }
            }
            (Target::Instance { id, .. }, 'r') => Some(Action::Restart(id.clone())),
            (Target::Generation(n), 'r') => {
                let active = self.status.as_ref().map_or(0, |s| s.active_generation);
                if *n == active {
                    self.say(format!("generation {n} is already the active one"), true);
                    None
                } else {
                    Some(Action::Rollback(*n))
                }
            }
            _ => None,
        };
        if let Some(action) = action {
            self.mode = Mode::Confirm(action);
        }
    }

    fn detail_key(&mut self, target: Target, key: KeyEvent) -> Option<Action> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let Some(pane) = self.detail.as_mut() else {
            self.go_back();
            return None;
        };
        let page = pane.height.max(1);
        let bottom = pane.lines.saturating_sub(pane.height);
        match key.code {
            KeyCode::Char('q') => self.quit = true,
            KeyCode::Char(':') => self.mode = Mode::Command(String::new()),
            KeyCode::Char('?') => self.mode = Mode::Help,
            KeyCode::Esc | KeyCode::Char('h') | KeyCode::Left | KeyCode::Backspace => {
                self.go_back()
            }
            KeyCode::Char('j') | KeyCode::Down => pane.scroll = (pane.scroll + 1).min(bottom),
            KeyCode::Char('k') | KeyCode::Up => pane.scroll = pane.scroll.saturating_sub(1),
            KeyCode::Char('g') | KeyCode::Home => pane.scroll = 0,
            KeyCode::Char('G') | KeyCode::End => pane.scroll = bottom,
            KeyCode::PageDown => pane.scroll = (pane.scroll + page).min(bottom),
            KeyCode::PageUp => pane.scroll = pane.scroll.saturating_sub(page),
            KeyCode::Char('f') | KeyCode::Char('d') if ctrl => {
                pane.scroll = (pane.scroll + page).min(bottom)
            }
            KeyCode::Char('b') | KeyCode::Char('u') if ctrl => {
                pane.scroll = pane.scroll.saturating_sub(page)
            }
            // Drill down: from a worker to the VMs placed on it.
            KeyCode::Enter => {
                if let Target::Worker(id) = &target {
                    let previous = self.lists[View::Vms.index()].filter.clone();
                    self.push_back(Some((View::Vms, previous)));
                    self.detail = None;
                    self.screen = Screen::List(View::Vms);
                    self.set_filter(&format!("worker={id}"));
                }
            }
            KeyCode::Char(c) => self.action_key(&target, c),
            _ => {}
        }
        None
    }

    /// Whether a canary rollout waits for promotion: of the VM of `instance`, or of any VM.
    fn promotion_waiting(&self, instance: Option<&str>) -> bool {
        let vm = match instance {
            Some(id) => match self.instance(id) {
                Some(i) => Some(i.vm_name.as_str()),
                None => return false,
            },
            None => None,
        };
        self.status.as_ref().is_some_and(|s| {
            s.rollouts.iter().any(|r| {
                r.phase == RolloutPhase::WaitingForPromotion && vm.is_none_or(|vm| r.vm_name == vm)
            })
        })
    }

    /// The keys that do something on the screen shown, for the footer.
    pub fn key_hints(&self) -> Vec<(&'static str, &'static str)> {
        match &self.mode {
            Mode::Command(_) => {
                return vec![("enter", "go"), ("tab", "complete"), ("esc", "cancel")]
            }
            Mode::Filter(_) => {
                return vec![
                    ("enter", "keep"),
                    ("esc", "clear"),
                    ("k=v", "column or label"),
                    ("k!=v", "not"),
                ]
            }
            Mode::Help => return vec![("esc", "close help")],
            Mode::Confirm(_) => return vec![("y", "yes, do it"), ("n/esc", "no")],
            Mode::Normal => {}
        }
        let mut hints = Vec::new();
        match &self.screen {
            Screen::List(view) => {
                hints.push((":", "view"));
                if *view != View::Overview {
                    hints.push(("/", "filter"));
                    hints.push(("j/k", "move"));
                    hints.push(("enter", "detail"));
                }
                match view {
                    View::Workers => {
                        hints.push(("c", "cordon"));
                        hints.push(("d", "drain"));
                    }
                    View::Vms => {
                        hints.push(("r", "restart"));
                        if self.promotion_waiting(None) {
                            hints.push(("p", "promote canary"));
                        }
                    }
                    View::Generations => hints.push(("r", "roll back")),
                    _ => {}
                }
                let has_filter = self
                    .current_view()
                    .is_some_and(|v| !self.list(v).filter.is_empty());
                if has_filter {
                    hints.push(("esc", "clear filter"));
                } else if !self.back.is_empty() {
                    hints.push(("esc", "back"));
                }
                hints.push(("tab", "next view"));
            }
            Screen::Detail(target) => {
                hints.push(("esc", "back"));
                hints.push(("j/k", "scroll"));
                match target {
                    Target::Worker(_) => {
                        hints.push(("enter", "its VMs"));
                        hints.push(("c", "cordon"));
                        hints.push(("d", "drain"));
                    }
                    Target::Instance { id, .. } => {
                        hints.push(("r", "restart"));
                        if self.promotion_waiting(Some(id)) {
                            hints.push(("p", "promote canary"));
                        }
                    }
                    Target::Generation(_) => hints.push(("r", "roll back")),
                    _ => {}
                }
                hints.push((":", "view"));
            }
        }
        hints.push(("?", "help"));
        hints.push(("q", "quit"));
        hints
    }
}

/// Completes a view name typed after `:` when one view starts with it.
pub fn complete_command(prefix: &str) -> Option<&'static str> {
    let prefix = prefix.trim().to_ascii_lowercase();
    let mut matching = View::ALL
        .into_iter()
        .map(View::name)
        .filter(|n| n.starts_with(&prefix));
    match (matching.next(), matching.next()) {
        (Some(n), None) => Some(n),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interactive::testdata;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn ctrl(c: char) -> KeyEvent {
        KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)
    }

    /// Presses each key of `keys`: characters as typed, `\n` Enter, `\x1b` Esc.
    fn typed(app: &mut App, keys: &str) -> Vec<Action> {
        keys.chars()
            .filter_map(|c| {
                app.handle_key(key(match c {
                    '\n' => KeyCode::Enter,
                    '\x1b' => KeyCode::Esc,
                    '\t' => KeyCode::Tab,
                    '\x08' => KeyCode::Backspace,
                    c => KeyCode::Char(c),
                }))
            })
            .collect()
    }

    fn app() -> App {
        testdata::app()
    }

    fn selected_worker(app: &App) -> String {
        let row = app
            .list(View::Workers)
            .selected_row()
            .expect("a selected row");
        app.status().expect("status").workers[row].info.id.clone()
    }

    #[test]
    fn view_names_aliases_and_unique_prefixes() {
        assert_eq!(View::parse("workers"), Some(View::Workers));
        assert_eq!(View::parse("nodes"), Some(View::Workers));
        assert_eq!(View::parse("po"), Some(View::Vms));
        assert_eq!(View::parse("gen"), Some(View::Generations));
        assert_eq!(View::parse("ge"), Some(View::Generations));
        assert_eq!(View::parse("Pipel"), Some(View::Pipelines));
        assert_eq!(View::parse(""), None);
        assert_eq!(View::parse("zzz"), None);
        assert_eq!(complete_command("wor"), Some("workers"));
        assert_eq!(complete_command(""), None);
    }

    #[test]
    fn colon_switches_view_and_esc_goes_back() {
        let mut app = app();
        typed(&mut app, ":workers\n");
        assert_eq!(app.screen(), &Screen::List(View::Workers));
        typed(&mut app, ":vm\n");
        assert_eq!(app.screen(), &Screen::List(View::Vms));
        typed(&mut app, "\x1b");
        assert_eq!(app.screen(), &Screen::List(View::Workers));
        typed(&mut app, "\x1b");
        assert_eq!(app.screen(), &Screen::List(View::Overview));
        // Nothing further back: Esc stays put.
        typed(&mut app, "\x1b");
        assert_eq!(app.screen(), &Screen::List(View::Overview));
    }

    #[test]
    fn unknown_view_says_which_exist() {
        let mut app = app();
        typed(&mut app, ":bogus\n");
        assert_eq!(app.screen(), &Screen::List(View::Overview));
        let flash = app.flash.clone().expect("a message");
        assert!(flash.error);
        assert!(
            flash.text.contains("no view named \"bogus\""),
            "{}",
            flash.text
        );
        assert!(flash.text.contains("workers"), "{}", flash.text);
    }

    #[test]
    fn tab_completes_a_view_name() {
        let mut app = app();
        typed(&mut app, ":gen\t");
        assert_eq!(app.mode(), &Mode::Command("generations".into()));
        typed(&mut app, "\n");
        assert_eq!(app.screen(), &Screen::List(View::Generations));
    }

    #[test]
    fn backspace_on_an_empty_prompt_leaves_it() {
        let mut app = app();
        typed(&mut app, ":w\x08");
        assert_eq!(app.mode(), &Mode::Command(String::new()));
        typed(&mut app, "\x08");
        assert_eq!(app.mode(), &Mode::Normal);
    }

    #[test]
    fn j_k_move_and_stop_at_the_ends() {
        let mut app = app();
        typed(&mut app, ":workers\n");
        assert_eq!(selected_worker(&app), "w1");
        typed(&mut app, "k");
        assert_eq!(selected_worker(&app), "w1");
        typed(&mut app, "jj");
        assert_eq!(selected_worker(&app), "w3");
        typed(&mut app, "jjjjjj");
        assert_eq!(selected_worker(&app), "w4");
        app.handle_key(key(KeyCode::Up));
        assert_eq!(selected_worker(&app), "w3");
        typed(&mut app, "g");
        assert_eq!(selected_worker(&app), "w1");
        typed(&mut app, "G");
        assert_eq!(selected_worker(&app), "w4");
    }

    #[test]
    fn filter_by_text_column_and_label() {
        let mut app = app();
        typed(&mut app, ":vms\n/web");
        let rows = app.list(View::Vms).rows.len();
        assert_eq!(rows, 3, "web-0..2");
        // Live while typing, kept on Enter.
        typed(&mut app, "\n");
        assert_eq!(app.mode(), &Mode::Normal);
        assert_eq!(app.list(View::Vms).filter.raw(), "web");

        // Column match: phase=failed.
        typed(&mut app, "\x1b/phase=failed\n");
        let ids: Vec<&str> = app
            .list(View::Vms)
            .rows
            .iter()
            .map(|&r| {
                app.status().expect("status").instances[r]
                    .instance_id
                    .as_str()
            })
            .collect();
        assert_eq!(ids, ["db-0"]);

        // Label from the spec: tier=frontend is only on web.
        typed(&mut app, "\x1b/tier=frontend worker!=w2\n");
        let ids: Vec<&str> = app
            .list(View::Vms)
            .rows
            .iter()
            .map(|&r| {
                app.status().expect("status").instances[r]
                    .instance_id
                    .as_str()
            })
            .collect();
        assert_eq!(ids, ["web-0", "web-2"]);

        // Workers by label.
        typed(&mut app, ":workers\n/gpu=true\n");
        assert_eq!(app.list(View::Workers).rows.len(), 1);
        assert_eq!(selected_worker(&app), "w3");
    }

    #[test]
    fn esc_clears_the_filter_before_going_back() {
        let mut app = app();
        typed(&mut app, ":workers\n/w1\n");
        assert_eq!(app.list(View::Workers).rows.len(), 1);
        typed(&mut app, "\x1b");
        assert_eq!(app.screen(), &Screen::List(View::Workers));
        assert_eq!(app.list(View::Workers).rows.len(), 4);
        typed(&mut app, "\x1b");
        assert_eq!(app.screen(), &Screen::List(View::Overview));
    }

    #[test]
    fn esc_while_typing_a_filter_clears_it() {
        let mut app = app();
        typed(&mut app, ":workers\n/w2");
        assert_eq!(app.list(View::Workers).rows.len(), 1);
        typed(&mut app, "\x1b");
        assert_eq!(app.mode(), &Mode::Normal);
        assert_eq!(app.list(View::Workers).rows.len(), 4);
    }

    #[test]
    fn selection_follows_the_item_when_data_changes() {
        let mut app = app();
        typed(&mut app, ":workers\njj");
        assert_eq!(selected_worker(&app), "w3");
        // w1 disappears and a new worker sorts first: the selection stays on w3.
        let mut status = app.status().cloned().expect("status");
        status.workers.remove(0);
        let mut w0 = status.workers[0].clone();
        w0.info.id = "w0".into();
        status.workers.insert(0, w0);
        app.apply(Update::Status(Box::new(status)));
        assert_eq!(selected_worker(&app), "w3");
        // And when it goes away, the selection stays in range.
        let mut status = app.status().cloned().expect("status");
        status.workers.truncate(2);
        app.apply(Update::Status(Box::new(status)));
        assert_eq!(app.list(View::Workers).selected, 1);
    }

    #[test]
    fn enter_opens_a_detail_and_esc_returns_to_the_same_row() {
        let mut app = app();
        typed(&mut app, ":vms\njj\n");
        assert_eq!(
            app.detail_target(),
            Some(&Target::Instance {
                id: "web-2".into(),
                worker: "w3".into()
            })
        );
        assert!(matches!(
            app.detail.as_ref().map(|d| &d.data),
            Some(DetailData::Loading)
        ));
        typed(&mut app, "\x1b");
        assert_eq!(app.screen(), &Screen::List(View::Vms));
        assert_eq!(app.detail_target(), None);
        assert_eq!(app.list(View::Vms).selected, 2);
    }

    #[test]
    fn enter_on_a_worker_detail_drills_into_its_vms_and_back_restores_the_filter() {
        let mut app = app();
        typed(&mut app, ":vms\n/web\n:workers\nj\n");
        assert_eq!(app.detail_target(), Some(&Target::Worker("w2".into())));
        typed(&mut app, "\n");
        assert_eq!(app.screen(), &Screen::List(View::Vms));
        assert_eq!(app.list(View::Vms).filter.raw(), "worker=w2");
        let ids: Vec<&str> = app
            .list(View::Vms)
            .rows
            .iter()
            .map(|&r| {
                app.status().expect("status").instances[r]
                    .instance_id
                    .as_str()
            })
            .collect();
        assert_eq!(ids, ["web-1", "db-0"]);
        // Esc clears the drill-down filter first, then goes back to the worker, and the VMs
        // view has its own filter again.
        typed(&mut app, "\x1b\x1b");
        assert_eq!(app.detail_target(), Some(&Target::Worker("w2".into())));
        assert_eq!(app.list(View::Vms).filter.raw(), "web");
    }

    #[test]
    fn detail_updates_only_land_on_their_pane() {
        let mut app = app();
        typed(&mut app, ":workers\n\n");
        let w2 = Box::new(app.worker("w2").cloned().expect("w2"));
        app.apply(Update::Detail(
            Target::Worker("w2".into()),
            Ok(Detail::Worker(w2)),
        ));
        assert!(matches!(
            app.detail.as_ref().map(|d| &d.data),
            Some(DetailData::Loading)
        ));
        let w1 = Box::new(app.worker("w1").cloned().expect("w1"));
        app.apply(Update::Detail(
            Target::Worker("w1".into()),
            Ok(Detail::Worker(w1)),
        ));
        assert!(matches!(
            app.detail.as_ref().map(|d| &d.data),
            Some(DetailData::Loaded(_))
        ));
        // A failed refresh keeps what is shown.
        app.apply(Update::Detail(
            Target::Worker("w1".into()),
            Err("gone".into()),
        ));
        assert!(matches!(
            app.detail.as_ref().map(|d| &d.data),
            Some(DetailData::Loaded(_))
        ));
    }

    #[test]
    fn actions_need_confirmation() {
        let mut app = app();
        typed(&mut app, ":workers\n");
        assert_eq!(typed(&mut app, "d"), []);
        assert_eq!(app.mode(), &Mode::Confirm(Action::Drain("w1".into())));
        // Any other key does nothing; n cancels.
        assert_eq!(typed(&mut app, "x\n"), []);
        assert_eq!(app.mode(), &Mode::Confirm(Action::Drain("w1".into())));
        assert_eq!(typed(&mut app, "n"), []);
        assert_eq!(app.mode(), &Mode::Normal);
        // y confirms and hands the action over once.
        assert_eq!(typed(&mut app, "dy"), [Action::Drain("w1".into())]);
        assert_eq!(app.in_flight(), [Action::Drain("w1".into())]);
        app.apply(Update::ActionDone(
            Action::Drain("w1".into()),
            Ok("w1 is draining".into()),
        ));
        assert!(app.in_flight().is_empty());
        assert_eq!(
            app.flash.as_ref().map(|f| f.text.as_str()),
            Some("w1 is draining")
        );
    }

    #[test]
    fn cordon_toggles_by_worker_state() {
        let mut app = app();
        typed(&mut app, ":workers\n");
        assert_eq!(typed(&mut app, "cy"), [Action::Cordon("w1".into())]);
        // w4 is cordoned in the test data.
        assert_eq!(typed(&mut app, "Gcy"), [Action::Uncordon("w4".into())]);
    }

    #[test]
    fn rollback_and_promote_keys() {
        let mut app = app();
        typed(&mut app, ":generations\n");
        // The first row is the active generation: refused with a sentence, no dialog.
        assert_eq!(typed(&mut app, "r"), []);
        assert_eq!(app.mode(), &Mode::Normal);
        assert!(app
            .flash
            .as_ref()
            .is_some_and(|f| f.text.contains("already the active")));
        assert_eq!(typed(&mut app, "jry"), [Action::Rollback(6)]);

        // api has a canary waiting for promotion in the test data; web does not.
        typed(&mut app, ":vms\n");
        assert_eq!(typed(&mut app, "p"), []);
        assert!(app
            .flash
            .as_ref()
            .is_some_and(|f| f.text.contains("no canary")));
        typed(&mut app, "/api-1\n");
        assert_eq!(typed(&mut app, "py"), [Action::Promote("api".into())]);
        // `r` on a VM restarts that instance, after asking; `n` cancels.
        assert_eq!(typed(&mut app, "rn"), []);
        assert_eq!(app.mode(), &Mode::Normal);
        assert_eq!(typed(&mut app, "ry"), [Action::Restart("api-0".into())]);
    }

    #[test]
    fn ctrl_c_quits_from_any_mode() {
        for keys in ["", ":wor", "/x", "?", ":workers\nd"] {
            let mut app = app();
            typed(&mut app, keys);
            app.handle_key(ctrl('c'));
            assert!(app.should_quit(), "after {keys:?}");
        }
    }

    #[test]
    fn q_quits_but_not_while_typing() {
        let mut app = app();
        typed(&mut app, "/");
        assert!(!app.should_quit(), "/ does nothing on the overview");
        typed(&mut app, ":workers\n/q");
        assert!(!app.should_quit());
        assert_eq!(app.list(View::Workers).filter.raw(), "q");
        typed(&mut app, "\nq");
        assert!(app.should_quit());
    }

    #[test]
    fn help_opens_and_closes() {
        let mut app = app();
        typed(&mut app, "?");
        assert_eq!(app.mode(), &Mode::Help);
        typed(&mut app, "j");
        assert_eq!(app.mode(), &Mode::Help);
        typed(&mut app, "\x1b");
        assert_eq!(app.mode(), &Mode::Normal);
    }

    #[test]
    fn pipelines_need_a_ci_url() {
        let mut app = app();
        app.ci = None;
        typed(&mut app, ":pipelines\n");
        assert_eq!(app.screen(), &Screen::List(View::Overview));
        assert!(app.flash.as_ref().is_some_and(|f| f.text.contains("--ci")));
        // And Tab skips it.
        for _ in 0..6 {
            typed(&mut app, "\t");
            assert_ne!(app.screen(), &Screen::List(View::Pipelines));
        }
    }

    #[test]
    fn events_are_deduplicated_newest_first_and_bounded() {
        let mut app = app();
        let before = app.events().len();
        let last = app.events().back().map(|e| e.seq).unwrap_or(0);
        let replay: Vec<Event> = app.events().iter().cloned().collect();
        app.apply(Update::Events(replay));
        assert_eq!(
            app.events().len(),
            before,
            "a replay after reconnect adds nothing"
        );
        let many: Vec<Event> = (1..=EVENT_MEMORY as u64 + 10)
            .map(|i| Event {
                seq: last + i,
                message: format!("e{i}"),
                ..Default::default()
            })
            .collect();
        app.apply(Update::Events(many));
        assert_eq!(app.events().len(), EVENT_MEMORY);
        typed(&mut app, ":events\n");
        let first = app.list(View::Events).selected_row().expect("row");
        assert_eq!(app.events()[first].seq, last + EVENT_MEMORY as u64 + 10);
        assert!(app.event(last + 20).is_some());
        assert!(app.event(last + 5).is_none());
    }

    #[test]
    fn losing_the_link_reports_actions_in_flight() {
        let mut app = app();
        typed(&mut app, ":workers\ncy");
        app.apply(Update::Link(Link::Lost {
            error: "reset".into(),
            retry_at_ms: 0,
            attempt: 1,
        }));
        assert!(app.in_flight().is_empty());
        let flash = app.flash.clone().expect("message");
        assert!(
            flash.error && flash.text.contains("interrupted"),
            "{}",
            flash.text
        );
    }

    #[test]
    fn scroll_keeps_the_selection_visible() {
        let mut list = ListState {
            rows: (0..100).collect(),
            ..Default::default()
        };
        list.select(50);
        list.scroll_to_fit(10);
        assert_eq!(list.offset, 41);
        list.select(45);
        list.scroll_to_fit(10);
        assert_eq!(list.offset, 41);
        list.select(10);
        list.scroll_to_fit(10);
        assert_eq!(list.offset, 10);
        // A window taller than what is left pulls back so it stays full.
        list.offset = 95;
        list.select(99);
        list.scroll_to_fit(10);
        assert_eq!(list.offset, 90);
    }
}
