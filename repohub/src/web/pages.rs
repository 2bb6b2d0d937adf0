//! The HTML. Each page is a function from its view data (the same struct the JSON API
//! returns) to markup; [`layout`] wraps it in the chrome.

use axum::http::StatusCode;
use maud::{html, Markup, DOCTYPE};

use schema::ci::{PipelineSummary, Status, StepStatus};
use schema::model::{Health, Phase, RolloutPhase, WorkerState};

use super::format::{self, short};
use super::forms::{NewProjectForm, NewRepositoryForm};
use super::views::*;
use crate::db::{RepoKind, Role};

/// Who is looking, for the navigation bar and forms.
pub struct Chrome<'a> {
    pub username: &'a str,
    pub is_admin: bool,
    pub csrf: &'a str,
    pub section: Section,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Projects,
    Deployments,
    Users,
    Settings,
}

/// A message shown above a page's content.
pub enum Notice {
    None,
    Error(String),
    Info(String),
}

impl Notice {
    fn render(&self) -> Markup {
        match self {
            Notice::None => html! {},
            Notice::Error(m) => html! { div.notice.error role="alert" { (m) } },
            Notice::Info(m) => html! { div.notice.info role="status" { (m) } },
        }
    }
}

pub fn layout(title: &str, chrome: Option<&Chrome<'_>>, body: Markup) -> Markup {
    let tab = |s: Section, href: &str, label: &str| {
        let current = chrome.is_some_and(|c| c.section == s);
        html! { a href=(href) aria-current=[current.then_some("page")] { (label) } }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Procurator" }
                link rel="stylesheet" href="/static/app.css";
                script src="/static/app.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/" title="Procurator" { span.logo { "◆" } span.name { " Procurator" } }
                    @if let Some(c) = chrome {
                        nav {
                            (tab(Section::Projects, "/projects", "Projects"))
                            (tab(Section::Deployments, "/deployments", "Deployments"))
                            @if c.is_admin { (tab(Section::Users, "/admin/users", "Users")) }
                            (tab(Section::Settings, "/settings", "Settings"))
                        }
                        form.signout method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(c.csrf);
                            span.who { (c.username) }
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

pub fn error_page(status: StatusCode, message: &str) -> Markup {
    layout(
        status.canonical_reason().unwrap_or("Error"),
        None,
        html! {
            section.narrow {
                h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
                p.lead { (message) }
                p { a href="javascript:history.back()" { "← Back" } " · " a href="/" { "Home" } }
            }
        },
    )
}

// ---- status pills ----

pub fn pipeline_pill(status: Status) -> Markup {
    let class = match status {
        Status::Queued => "neutral",
        Status::Running => "running",
        Status::Succeeded => "ok",
        Status::Failed => "bad",
    };
    html! { span class={"pill " (class)} { (status.as_str()) } }
}

fn step_pill(status: StepStatus) -> Markup {
    let class = match status {
        StepStatus::Pending | StepStatus::Skipped => "neutral",
        StepStatus::Running => "running",
        StepStatus::Succeeded => "ok",
        StepStatus::Failed => "bad",
    };
    html! { span class={"pill " (class)} { (status.as_str()) } }
}

/// The one-character icon next to a commit.
fn status_icon(p: Option<&PipelineSummary>) -> Markup {
    match p {
        None => html! { span.icon.neutral title="no pipeline" { "○" } },
        Some(p) => {
            let (class, glyph) = match p.status {
                Status::Queued => ("neutral", "◌"),
                Status::Running => ("running", "◔"),
                Status::Succeeded => ("ok", "✔"),
                Status::Failed => ("bad", "✘"),
            };
            html! { span class={"icon " (class)} title={"pipeline #" (p.id) ": " (p.status.as_str())} { (glyph) } }
        }
    }
}

fn phase_pill(p: Phase) -> Markup {
    let class = match p {
        Phase::Running => "ok",
        Phase::Pending | Phase::Fetching | Phase::Starting | Phase::Stopping => "running",
        Phase::Failed | Phase::CrashLoop => "bad",
        Phase::Stopped | Phase::Unknown => "neutral",
    };
    html! { span class={"pill " (class)} { (p.as_str()) } }
}

fn health_pill(h: Health) -> Markup {
    let class = match h {
        Health::Healthy => "ok",
        Health::Starting => "running",
        Health::Unhealthy => "bad",
        Health::Unknown => "neutral",
    };
    html! { span class={"pill " (class)} { (h.as_str()) } }
}

fn generation_pill(status: &str) -> Markup {
    let class = match status {
        "active" => "ok",
        "failed" | "rolled-back" => "bad",
        "superseded" => "neutral",
        _ => "running",
    };
    html! { span class={"pill " (class)} { (status) } }
}

fn role_pill(r: Role) -> Markup {
    html! { span class={"pill role " (r.as_str())} { (r.as_str()) } }
}

fn csrf_field(chrome: &Chrome<'_>) -> Markup {
    html! { input type="hidden" name="csrf" value=(chrome.csrf); }
}

// ---- sign-in ----

pub fn setup_page(csrf: &str, notice: &Notice, username: &str) -> Markup {
    layout(
        "Set up",
        None,
        html! {
            section.narrow.card {
                h1 { "Welcome to Procurator" }
                p { "Create the administrator account. Administrators add the other users." }
                (notice.render())
                form method="post" action="/setup" {
                    input type="hidden" name="csrf" value=(csrf);
                    label { "Username" input name="username" value=(username) required autocomplete="username" pattern="[a-z0-9][a-z0-9_-]{0,31}"; }
                    label { "Password " small { "(at least 8 characters)" } input type="password" name="password" required minlength="8" autocomplete="new-password"; }
                    button type="submit" { "Create administrator" }
                }
            }
        },
    )
}

pub fn login_page(csrf: &str, notice: &Notice, username: &str, next: &str) -> Markup {
    layout(
        "Sign in",
        None,
        html! {
            section.narrow.card {
                h1 { "Sign in" }
                (notice.render())
                form method="post" action="/login" {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="next" value=(next);
                    label { "Username" input name="username" value=(username) required autocomplete="username" autofocus; }
                    label { "Password" input type="password" name="password" required autocomplete="current-password"; }
                    button type="submit" { "Sign in" }
                }
            }
        },
    )
}

// ---- projects ----

pub fn home_page(chrome: &Chrome<'_>, v: &HomeView) -> Markup {
    layout(
        "Home",
        Some(chrome),
        html! {
            div.cards {
                (cluster_card(&v.cluster))
                div.card {
                    h3 { "Projects" }
                    p.big { (v.projects.len()) }
                    p { a href="/projects" { "All projects →" } }
                }
            }
            h2 { "Your projects" }
            (projects_table(&v.projects))
        },
    )
}

fn cluster_card(c: &ClusterSummary) -> Markup {
    html! {
        div.card {
            h3 { "Cluster " @if let Some(n) = &c.name { code { (n) } } }
            @if c.connected {
                p.big { "gen " (c.active_generation) }
                p { (c.running) " of " (c.instances) " instances running · " (c.workers_ready) "/" (c.workers) " workers ready" }
            } @else {
                p.bad { (c.error.as_deref().unwrap_or("not connected")) }
            }
            p { a href="/deployments" { "Deployments →" } }
        }
    }
}

fn projects_table(projects: &[ProjectRow]) -> Markup {
    html! {
        @if projects.is_empty() {
            p.empty { "You are not a member of any project yet. Create one, or ask an owner to add you." }
        } @else {
            div.scroll { table {
                thead { tr { th { "Project" } th { "Your role" } th { "Description" } th.num { "Repositories" } } }
                tbody {
                    @for p in projects {
                        tr {
                            td { a href={"/projects/" (p.project.name)} { strong { (p.project.name) } } }
                            td { (role_pill(p.role)) }
                            td { (p.project.description) }
                            td.num { (p.repositories) }
                        }
                    }
                }
            } }
        }
    }
}

pub fn projects_page(
    chrome: &Chrome<'_>,
    v: &ProjectsView,
    notice: &Notice,
    form: &NewProjectForm,
) -> Markup {
    layout(
        "Projects",
        Some(chrome),
        html! {
            h1 { "Projects" }
            (notice.render())
            (projects_table(&v.projects))
            details.card open[matches!(notice, Notice::Error(_)) || v.projects.is_empty()] {
                summary { "New project" }
                form.inline method="post" action="/projects" {
                    (csrf_field(chrome))
                    label { "Name" input name="name" value=(form.name) required pattern="[a-z0-9][a-z0-9_-]{0,39}" placeholder="shop"; }
                    label.grow { "Description" input name="description" value=(form.description) maxlength="500" placeholder="What it is for"; }
                    button type="submit" { "Create project" }
                }
            }
        },
    )
}

pub fn project_page(
    chrome: &Chrome<'_>,
    v: &ProjectView,
    notice: &Notice,
    form: &NewRepositoryForm,
) -> Markup {
    let p = &v.project.name;
    layout(
        p,
        Some(chrome),
        html! {
            nav.crumbs { a href="/projects" { "Projects" } " / " }
            h1 { (p) " " (role_pill(v.role)) }
            @if !v.project.description.is_empty() { p.lead { (v.project.description) } }
            (notice.render())
            @if let Some(e) = &v.ci_error { div.notice.warn { "Pipelines unavailable: " (e) } }
            h2 { "Repositories" }
            @if v.repositories.is_empty() {
                p.empty { "No repositories yet." }
            } @else {
                div.scroll { table {
                    thead { tr { th { "Repository" } th { "Source" } th { "Branch" } th { "Last pipeline" } th { "Badge" } } }
                    tbody {
                        @for r in &v.repositories {
                            tr {
                                td { a href={"/projects/" (p) "/repositories/" (r.repository.name)} { strong { (r.repository.name) } } }
                                td { @match r.repository.kind { RepoKind::Hosted => "hosted", RepoKind::External => { code.small { (r.repository.url.as_deref().unwrap_or("")) } } } }
                                td { code { (r.repository.branch) } }
                                td { @if let Some(pl) = &r.last_pipeline {
                                    a href={"/projects/" (p) "/pipelines/" (pl.id)} { "#" (pl.id) } " " (pipeline_pill(pl.status))
                                } @else { span.muted { "none" } } }
                                td { img src=(r.badge_svg) alt="pipeline status" height="20"; }
                            }
                        }
                    }
                } }
            }
            @if v.role >= Role::Member {
                details.card open[matches!(notice, Notice::Error(_))] {
                    summary { "Add a repository" }
                    form method="post" action={"/projects/" (p) "/repositories"} {
                        (csrf_field(chrome))
                        div.row {
                            label { "Name" input name="name" value=(form.name) required pattern="[a-z0-9][a-z0-9_-]{0,39}" placeholder="web"; }
                            label { "Deploy branch" input name="branch" value=(form.branch) placeholder="main"; }
                        }
                        fieldset {
                            legend { "Source" }
                            label.choice { input type="radio" name="kind" value="hosted" checked[form.kind != "external"]; " Hosted here — push to it to run a pipeline" }
                            label.choice { input type="radio" name="kind" value="external" checked[form.kind == "external"]; " External URL — pcr-ci watches it" }
                            label { "URL " small { "(external only)" } input name="url" value=(form.url) placeholder="https://git.example.com/team/web.git"; }
                        }
                        button type="submit" { "Add repository" }
                    }
                }
            }
            h2 { "Recent pipelines " small { a href={"/projects/" (p) "/pipelines"} { "all →" } } }
            (pipelines_table(p, &v.pipelines))
            h2 { "Members" }
            div.scroll { table {
                thead { tr { th { "User" } th { "Role" } @if v.role == Role::Owner { th {} } } }
                tbody {
                    @for m in &v.members {
                        tr {
                            td { (m.username) }
                            td { (role_pill(m.role)) }
                            @if v.role == Role::Owner {
                                td.actions {
                                    form method="post" action={"/projects/" (p) "/members/" (m.username) "/remove"} {
                                        (csrf_field(chrome))
                                        button.link.danger type="submit" { "Remove" }
                                    }
                                }
                            }
                        }
                    }
                }
            } }
            @if v.role == Role::Owner {
                form.inline.card method="post" action={"/projects/" (p) "/members"} {
                    (csrf_field(chrome))
                    label { "Username" input name="username" required; }
                    label { "Role" select name="role" {
                        option value="viewer" { "viewer — sees everything" }
                        option value="member" selected { "member — also adds repositories" }
                        option value="owner" { "owner — also manages members" }
                    } }
                    button type="submit" { "Add or change member" }
                }
            }
        },
    )
}

pub fn pipelines_table(project: &str, pipelines: &[PipelineRow]) -> Markup {
    let now = crate::now_ms();
    html! {
        @if pipelines.is_empty() {
            p.empty { "No pipelines yet. Push a commit to run one." }
        } @else {
            div.scroll { table.pipelines {
                thead { tr { th { "#" } th { "Status" } th { "Repository" } th { "Commit" } th { "Ref" } th { "Trigger" } th { "Started" } th.num { "Took" } th { "Result" } } }
                tbody {
                    @for row in pipelines {
                        @let pl = &row.pipeline;
                        tr {
                            td { a href={"/projects/" (project) "/pipelines/" (pl.id)} { "#" (pl.id) } }
                            td { (pipeline_pill(pl.status)) }
                            td { a href={"/projects/" (project) "/repositories/" (row.repository)} { (row.repository) } }
                            td { code { (short(&pl.commit)) } }
                            td { code.small { (pl.ref_name.strip_prefix("refs/heads/").unwrap_or(&pl.ref_name)) } }
                            td { (pl.trigger.as_str()) }
                            td title=(format::time(pl.created_ms)) { (format::ago(pl.started_ms.unwrap_or(pl.created_ms), now)) }
                            td.num { @if let (Some(s), Some(f)) = (pl.started_ms, pl.finished_ms) { (format::duration(f.saturating_sub(s))) } }
                            td.msg { (pl.message) }
                        }
                    }
                }
            } }
        }
    }
}

pub fn pipelines_page(chrome: &Chrome<'_>, v: &PipelinesView) -> Markup {
    layout(
        "Pipelines",
        Some(chrome),
        html! {
            nav.crumbs { a href="/projects" { "Projects" } " / " a href={"/projects/" (v.project)} { (v.project) } " / " }
            h1 { "Pipelines" }
            @if let Some(e) = &v.ci_error { div.notice.warn { "Pipelines unavailable: " (e) } }
            (pipelines_table(&v.project, &v.pipelines))
        },
    )
}

pub fn pipeline_page(chrome: &Chrome<'_>, v: &PipelineView) -> Markup {
    let d = &v.pipeline;
    let s = &d.summary;
    let base = format!("/projects/{}/pipelines/{}", v.project, s.id);
    let now = crate::now_ms();
    layout(
        &format!("Pipeline #{}", s.id),
        Some(chrome),
        html! {
            nav.crumbs {
                a href="/projects" { "Projects" } " / " a href={"/projects/" (v.project)} { (v.project) } " / "
                a href={"/projects/" (v.project) "/pipelines"} { "Pipelines" } " / "
            }
            h1 { "Pipeline #" (s.id) " " span #status { (pipeline_pill(s.status)) } }
            div #pipeline-meta { (pipeline_meta(v, now)) }
            div.pipeline-grid {
                section {
                    h2 { "Steps" }
                    div #steps { (steps_table(d, now)) }
                }
                section {
                    h2 { "Log " small { a href={(base) "/log"} download={"pipeline-" (s.id) ".log"} { "download raw" } } }
                    p #log-state.muted aria-live="polite" { @if s.status.is_finished() { "Loading…" } @else { "Connecting to the live log…" } }
                    pre #log.log data-stream={(base) "/stream"} data-steps=(steps_json(d)) {}
                }
            }
        },
    )
}

/// The facts that change while a run goes on; the page script swaps this in when a step
/// ends.
fn pipeline_meta(v: &PipelineView, now: u64) -> Markup {
    let s = &v.pipeline.summary;
    html! {
        p.meta {
            a href={"/projects/" (v.project) "/repositories/" (v.repository)} { strong { (v.repository) } }
            " · " code { (short(&s.commit)) }
            " · " code.small { (s.ref_name.strip_prefix("refs/heads/").unwrap_or(&s.ref_name)) }
            " · " (s.trigger.as_str()) @if s.deploy { ", deploys" } @else { ", checks only" }
            " · queued " span title={(format::time(s.created_ms)) " UTC"} { (format::ago(s.created_ms, now)) }
            @if let (Some(a), Some(b)) = (s.started_ms, s.finished_ms) { " · took " strong { (format::duration(b.saturating_sub(a))) } }
            @if let Some(g) = s.generation { " · generation " a href="/deployments" { (g) } @if !s.published { " (already active)" } }
        }
        @if !s.message.is_empty() {
            div class={"notice " (if s.status == Status::Failed { "error" } else { "info" })} { (s.message) }
        }
        @if s.rollout != schema::ci::Rollout::None {
            p { "Rollout: " strong { (s.rollout.as_str()) } @if !s.rollout_message.is_empty() { " — " (s.rollout_message) } }
        }
    }
}

fn steps_table(d: &schema::ci::PipelineDetail, now: u64) -> Markup {
    html! {
        div.scroll { table.steps {
            thead { tr { th { "Step" } th { "Status" } th.num { "Took" } } }
            tbody {
                @for st in &d.steps {
                    tr {
                        td {
                            strong { (st.name) }
                            @if !st.summary.is_empty() { br; span.muted.small.wrap { (st.summary) } }
                            @if let Some(c) = st.exit_code.filter(|c| *c != 0) { br; span.bad.small { "exit " (c) } }
                        }
                        td { (step_pill(st.status)) }
                        td.num {
                            @if let Some(ms) = st.duration_ms() { (format::duration(ms)) }
                            @else if let Some(a) = st.started_ms { span.muted { (format::duration(now.saturating_sub(a))) "…" } }
                        }
                    }
                }
            }
        } }
        @if !d.phases.is_empty() {
            h3.spaced { "Rollout" }
            div.scroll { table {
                thead { tr { th { "Phase" } th.num { "Took" } } }
                tbody { @for ph in &d.phases { tr { td { (ph.name) } td.num { (format::duration(ph.finished_ms.saturating_sub(ph.started_ms))) } } } }
            } }
        }
    }
}

fn steps_json(d: &schema::ci::PipelineDetail) -> String {
    let names: Vec<(u32, &str)> = d.steps.iter().map(|s| (s.index, s.name.as_str())).collect();
    serde_json::to_string(&names).unwrap_or_else(|_| "[]".into())
}

// ---- repositories ----

pub fn repository_page(chrome: &Chrome<'_>, v: &RepositoryView) -> Markup {
    let p = &v.project;
    let r = &v.repository;
    let now = crate::now_ms();
    layout(
        &format!("{p}/{}", r.name),
        Some(chrome),
        html! {
            nav.crumbs { a href="/projects" { "Projects" } " / " a href={"/projects/" (p)} { (p) } " / " }
            h1 { (r.name) " " img src=(v.badge_svg) alt="pipeline status" height="20"; }
            dl.facts {
                dt { "Source" } dd { @match r.kind {
                    RepoKind::Hosted => {
                        "hosted · " code.copy { "git clone " (v.clone_url) }
                        br; span.muted.small { "Sign in with your username and an API token as the password. On this machine you can also push to " code { (v.push_path) } "." }
                    },
                    RepoKind::External => { "external · " code { (r.url.as_deref().unwrap_or("")) } " (pcr-ci polls it)" },
                } }
                dt { "Deploy branch" } dd { code { (r.branch) } }
                dt { "Badge" } dd { code.small { (v.badge_svg) } " · shields.io endpoint " code.small { (v.badge_json) } }
            }
            @if let Some(e) = &v.ci_error { div.notice.warn { "Pipelines unavailable: " (e) } }
            @if let Some(e) = &v.git_error { div.notice.warn { (e) } }
            h2 { "Commits" }
            @if v.commits.is_empty() {
                p.empty { "Nothing pushed to " code { (r.branch) } " yet." }
            } @else {
                div.scroll { table.commits {
                    thead { tr { th {} th { "Commit" } th { "Message" } th { "Author" } th { "When" } th { "Flake" } } }
                    tbody {
                        @for c in &v.commits {
                            tr.selected[v.flake.as_ref().is_some_and(|f| f.commit == c.commit.sha)] {
                                td { @if let Some(pl) = &c.pipeline { a href={"/projects/" (p) "/pipelines/" (pl.id)} { (status_icon(Some(pl))) } } @else { (status_icon(None)) } }
                                td { code { (short(&c.commit.sha)) } }
                                td.msg { (c.commit.subject) }
                                td { (c.commit.author) }
                                td title=(format::time(c.commit.time_ms)) { (format::ago(c.commit.time_ms, now)) }
                                td { a href={"?commit=" (c.commit.sha)} { "analysis" } }
                            }
                        }
                    }
                } }
            }
            @if let Some(f) = &v.flake { (flake_section(f)) }
        },
    )
}

fn flake_section(f: &FlakeView) -> Markup {
    html! {
        h2 { "Autonix at " code { (short(&f.commit)) } }
        @if let Some(e) = &f.error { div.notice.warn { (e) } }
        @if let Some(a) = &f.analysis {
            @for proj in &a.projects {
                section.card {
                    h3 { code { (proj.path) } " — " (proj.name) }
                    @for w in &proj.warnings { div.notice.warn { (w.message) (evidence_list(&w.evidence)) } }
                    @for e in &proj.errors { div.notice.error { (e.message) (evidence_list(&e.evidence)) } }
                    div.scroll { table.evidence {
                        thead { tr { th { "Kind" } th { "Detected" } th.num { "Confidence" } th { "Evidence" } } }
                        tbody {
                            @for d in &proj.detections {
                                tr {
                                    td { span.pill.neutral { (d.facts.kind()) } }
                                    td { strong { (d.what) } }
                                    td.num { (confidence_bar(d.confidence)) }
                                    td { (evidence_list(&d.evidence)) }
                                }
                            }
                        }
                    } }
                }
            }
            p.muted { (a.stats.files) " files scanned" }
        }
        @if let Some(diff) = &f.diff {
            h3 { "Generated flake changes since " code { (short(f.previous_commit.as_deref().unwrap_or(""))) } }
            pre.diff { @for line in diff.lines() {
                @let class = if line.starts_with("+++") || line.starts_with("---") { "hdr" } else if line.starts_with('+') { "add" } else if line.starts_with('-') { "del" } else if line.starts_with("@@") { "hunk" } else { "" };
                span class=(class) { (line) } "\n"
            } }
        } @else if f.previous_commit.is_some() {
            p.muted { "The generated flake is the same as for " code { (short(f.previous_commit.as_deref().unwrap_or(""))) } "." }
        }
        div.two {
            @if let Some(flake) = &f.flake {
                div { h3 { "Generated flake.nix" } pre.code { (flake) } }
            }
            @if let Some(own) = &f.own_flake {
                div { h3 { "The repository's own flake.nix" } pre.code { (own) } }
            }
        }
    }
}

fn evidence_list(ev: &[autonix::Evidence]) -> Markup {
    html! {
        ul.evidence {
            @for e in ev {
                li { code { (e.file) @if let Some(l) = e.line { ":" (l) } } " " span.muted { (e.reason) } }
            }
        }
    }
}

fn confidence_bar(c: f32) -> Markup {
    let pct = (c.clamp(0.0, 1.0) * 100.0).round() as u32;
    html! { span.meter title={(pct) "%"} { span style={"width:" (pct) "%"} {} } " " (pct) "%" }
}

// ---- deployments ----

pub fn deployments_page(chrome: &Chrome<'_>, v: &DeploymentsView) -> Markup {
    layout(
        "Deployments",
        Some(chrome),
        html! {
            h1 { "Deployments" }
            div #live data-stream="/deployments/stream" data-fragment="/deployments/live" {
                (deployments_live(v))
            }
        },
    )
}

fn bar(used: i64, total: i64) -> Markup {
    let pct = if total > 0 {
        (used.clamp(0, total) * 100 / total) as u32
    } else {
        0
    };
    let class = if pct >= 90 {
        "hot"
    } else if pct >= 70 {
        "warm"
    } else {
        ""
    };
    html! { span class={"meter " (class)} { span style={"width:" (pct) "%"} {} } }
}

/// The part of the deployments page that live updates replace.
pub fn deployments_live(v: &DeploymentsView) -> Markup {
    let s = &v.snapshot;
    let now = crate::now_ms();
    html! {
        @if !s.connected {
            div.notice.error { "Control plane " code { (s.addr) } ": " (s.error.as_deref().unwrap_or("not connected"))
                @if s.status.is_some() { " — showing what it reported at " (format::time(s.fetched_ms)) " UTC." } }
        }
        @if let Some(st) = &s.status {
            @let running = st.instances.iter().filter(|i| i.phase == Phase::Running).count();
            @let healthy = st.instances.iter().filter(|i| i.health == Health::Healthy).count();
            @let drifted = st.instances.iter().filter(|i| i.drifted).count();
            @let unplaced = st.instances.iter().filter(|i| !i.unplaced_reason.is_empty()).count();
            @let ready = st.workers.iter().filter(|w| w.state == WorkerState::Ready).count();
            div.cards {
                div.card {
                    h3 { "Active generation" }
                    p.big { (st.active_generation) }
                    p { "commit " code { (short(&st.commit)) }
                        @if let Some(l) = v.links.get(&st.active_generation) { " · " (pipeline_link(l)) } }
                    p.muted { "published " (format::ago(st.published_at_ms, now)) }
                    @if st.last_good_generation != st.active_generation && st.last_good_generation > 0 {
                        p.muted { "last complete rollout: " (st.last_good_generation) }
                    }
                }
                div.card {
                    h3 { "Instances" }
                    p.big { (running) " / " (st.instances.len()) }
                    p { (healthy) " healthy"
                        @if drifted > 0 { " · " span.bad { (drifted) " drifted" } }
                        @if unplaced > 0 { " · " span.bad { (unplaced) " unplaced" } } }
                    p { span.meter.wide { span style={"width:" (st.convergence_percent.clamp(0.0, 100.0).round()) "%"} {} } " " (format!("{:.0}", st.convergence_percent)) "% converged" }
                }
                div.card {
                    h3 { "Workers" }
                    p.big { (ready) " / " (st.workers.len()) }
                    p { "ready · cluster " code { (st.settings.name) } " (" (format!("{:?}", st.settings.strategy).to_lowercase()) ")" }
                }
            }
            @let (done, active): (Vec<_>, Vec<_>) = st.rollouts.iter().partition(|r| r.phase == RolloutPhase::Complete);
            @if !st.rollouts.is_empty() {
                h2 { "Rollouts " small.muted { (done.len()) " of " (st.rollouts.len()) " VMs rolled out completely" } }
            }
            @if !active.is_empty() {
                div.scroll { table {
                    thead { tr { th { "VM" } th { "Phase" } th { "Generation" } th.num { "Updated" } th { "Message" } } }
                    tbody { @for r in &active {
                        @let class = match r.phase { RolloutPhase::Complete => "ok", RolloutPhase::Progressing => "running", RolloutPhase::WaitingForPromotion => "warn", RolloutPhase::Failed => "bad" };
                        tr {
                            td { strong { (r.vm_name) } }
                            td { span class={"pill " (class)} { (r.phase.as_str()) } }
                            td { (r.generation) }
                            td.num { (r.updated) " / " (r.total) }
                            td.msg { (r.message) }
                        }
                    } }
                } }
            }
            h2 { "Workers" }
            @if st.workers.is_empty() { p.empty { "No worker has registered." } } @else {
                div.scroll { table.workers {
                    thead { tr { th { "Worker" } th { "State" } th { "CPU free / total" } th { "Memory free / total" } th.num { "Instances" } th { "Heartbeat" } th { "Backends" } } }
                    tbody { @for w in &st.workers {
                        @let class = match w.state { WorkerState::Ready => if w.healthy { "ok" } else { "warn" }, WorkerState::Lost => "bad", _ => "neutral" };
                        tr {
                            td { strong { (w.info.id) } br; span.muted.small { (w.info.hostname) } }
                            td { span class={"pill " (class)} { (w.state.as_str()) } }
                            td { (bar(w.info.cpu as i64 - w.free_cpu, w.info.cpu as i64)) " " (w.free_cpu) " / " (w.info.cpu) }
                            td { (bar(w.info.memory_mb as i64 - w.free_memory_mb, w.info.memory_mb as i64)) " " (format::mib(w.free_memory_mb)) " / " (format::mib(w.info.memory_mb as i64)) }
                            td.num { (w.instance_count) }
                            td { (format::ago(w.last_heartbeat_ms, now)) }
                            td.small { @for (i, b) in w.info.backends.iter().enumerate() { @if i > 0 { ", " } (b.as_str()) } }
                        }
                    } }
                } }
            }
            h2 { "VMs " small.muted { (st.instances.len()) " instances" } }
            input #vm-filter type="search" placeholder="Filter by name, worker, phase…" aria-label="Filter VMs";
            div.scroll { table #vms.vms {
                thead { tr { th { "Instance" } th { "Worker" } th { "Phase" } th { "Health" } th { "Drift" } th { "Closure" } th.num { "Gen" } th.num { "CPU" } th.num { "Memory" } th { "Up" } th { "Message" } } }
                tbody { @for i in &st.instances {
                    tr.drift[i.drifted] {
                        td { strong { (i.instance_id) } }
                        td { @if i.worker_id.is_empty() { span.bad { "unplaced" } } @else { (i.worker_id) } }
                        td { (phase_pill(i.phase)) }
                        td { (health_pill(i.health)) }
                        td { @if i.drifted { span.pill.warn title={"observed " (i.observed_closure)} { "drifted" } } @else { span.muted { "—" } } }
                        td { code.small title=(i.desired_closure) { (format::store_name(&i.desired_closure)) } }
                        td.num { (i.generation) }
                        td.num { (format!("{:.0}%", i.cpu_percent)) }
                        td.num { (format::bytes(i.memory_bytes)) }
                        td { @if i.uptime_ms > 0 { (format::duration(i.uptime_ms)) } }
                        td.msg { @if !i.unplaced_reason.is_empty() { span.bad { (i.unplaced_reason) } } @else { (i.message) } }
                    }
                } }
            } }
        } @else if s.connected {
            p.empty { "The control plane has no status yet." }
        }
        h2 { "Generations" }
        @if s.generations.is_empty() { p.empty { "Nothing published yet." } } @else {
            div.scroll { table {
                thead { tr { th.num { "Gen" } th { "Status" } th { "Commit" } th { "Triggered by" } th { "Published" } th.num { "VMs" } th { "Reason" } } }
                tbody { @for g in &s.generations {
                    tr {
                        td.num { strong { (g.generation) } }
                        td { (generation_pill(&g.status)) }
                        td { code { (short(&g.commit)) } }
                        td { @if let Some(l) = v.links.get(&g.generation) { (pipeline_link(l)) } @else { span.muted { "—" } } }
                        td title=(format::time(g.published_at_ms)) { (format::ago(g.published_at_ms, now)) }
                        td.num { (g.vm_count) }
                        td.msg { (g.reason) }
                    }
                } }
            } }
        }
        @if !s.events.is_empty() {
            h2 { "Recent events" }
            div.scroll { table.events {
                thead { tr { th { "When" } th { "Event" } th { "Message" } } }
                tbody { @for e in &s.events {
                    tr { td { (format::ago(e.timestamp_ms, now)) } td { span.pill.neutral { (e.kind.as_str()) } } td.msg { (e.message) } }
                } }
            } }
        }
        p.muted.small { "Last change " (format::time(s.fetched_ms)) " UTC · updates live" }
    }
}

fn pipeline_link(l: &GenerationLink) -> Markup {
    html! {
        @match &l.project {
            Some(project) => { a href={"/projects/" (project) "/pipelines/" (l.pipeline)} { "#" (l.pipeline) } " " (l.trigger) " to " (l.repository) }
            None => { "pipeline #" (l.pipeline) " (" (l.trigger) ")" }
        }
    }
}

// ---- users and settings ----

pub fn users_page(
    chrome: &Chrome<'_>,
    users: &[crate::db::User],
    notice: &Notice,
    username: &str,
) -> Markup {
    let now = crate::now_ms();
    layout(
        "Users",
        Some(chrome),
        html! {
            h1 { "Users" }
            (notice.render())
            div.scroll { table {
                thead { tr { th { "User" } th { "Administrator" } th { "Added" } } }
                tbody { @for u in users { tr { td { strong { (u.username) } } td { @if u.is_admin { "yes" } } td { (format::ago(u.created_ms, now)) } } } }
            } }
            form.card method="post" action="/admin/users" {
                h3 { "Add a user" }
                (csrf_field(chrome))
                div.row {
                    label { "Username" input name="username" value=(username) required pattern="[a-z0-9][a-z0-9_-]{0,31}"; }
                    label { "Initial password" input type="password" name="password" required minlength="8" autocomplete="new-password"; }
                }
                label.choice { input type="checkbox" name="admin" value="on"; " Administrator (can add users)" }
                button type="submit" { "Add user" }
            }
        },
    )
}

pub fn settings_page(
    chrome: &Chrome<'_>,
    tokens: &[crate::db::ApiToken],
    notice: &Notice,
    new_secret: Option<&str>,
) -> Markup {
    let now = crate::now_ms();
    layout(
        "Settings",
        Some(chrome),
        html! {
            h1 { "Settings" }
            (notice.render())
            @if let Some(secret) = new_secret {
                div.notice.info {
                    "Your new token — copy it now, it is not shown again:" br;
                    code.copy #new-token { (secret) }
                    br; "Use it as " code { "Authorization: Bearer …" } " on " code { "/api/" } "."
                }
            }
            h2 { "API tokens" }
            @if tokens.is_empty() { p.empty { "No tokens." } } @else {
                div.scroll { table {
                    thead { tr { th { "Name" } th { "Created" } th { "Last used" } th {} } }
                    tbody { @for t in tokens { tr {
                        td { strong { (t.name) } }
                        td { (format::ago(t.created_ms, now)) }
                        td { (t.last_used_ms.map(|m| format::ago(m, now)).unwrap_or_else(|| "never".into())) }
                        td.actions { form method="post" action={"/settings/tokens/" (t.id) "/revoke"} { (csrf_field(chrome)) button.link.danger type="submit" { "Revoke" } } }
                    } } }
                } }
            }
            form.inline.card method="post" action="/settings/tokens" {
                (csrf_field(chrome))
                label { "Token name" input name="name" required maxlength="64" placeholder="deploy-script"; }
                button type="submit" { "Create token" }
            }
            h2 { "Password" }
            form.card method="post" action="/settings/password" {
                (csrf_field(chrome))
                div.row {
                    label { "Current password" input type="password" name="current" required autocomplete="current-password"; }
                    label { "New password" input type="password" name="new" required minlength="8" autocomplete="new-password"; }
                }
                button type="submit" { "Change password" }
            }
        },
    )
}

/// The SVG status badge, in the usual two-part shape.
pub fn badge_svg(label: &str, message: &str, color: &str) -> String {
    // Verdana 11px averages ~6.5px per character; close enough for a badge.
    let lw = 10 + (label.chars().count() as u32 * 13).div_ceil(2);
    let mw = 10 + (message.chars().count() as u32 * 13).div_ceil(2);
    let w = lw + mw;
    let esc = |s: &str| maud::html! { (s) }.into_string();
    let (label, message) = (esc(label), esc(message));
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="20" role="img" aria-label="{label}: {message}"><title>{label}: {message}</title><linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient><clipPath id="r"><rect width="{w}" height="20" rx="3" fill="#fff"/></clipPath><g clip-path="url(#r)"><rect width="{lw}" height="20" fill="#555"/><rect x="{lw}" width="{mw}" height="20" fill="{color}"/><rect width="{w}" height="20" fill="url(#s)"/></g><g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11"><text x="{lx}" y="14">{label}</text><text x="{mx}" y="14">{message}</text></g></svg>"##,
        lx = lw / 2,
        mx = lw + mw / 2,
    )
}
