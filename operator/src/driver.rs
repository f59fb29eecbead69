//! The one generic driver: everything every component would otherwise repeat,
//! written once, and the walk over the stack's graph.
//!
//! Rules it enforces for every component (issue 8's S1–S5):
//! - **dependencies gate writes**: a component is observed and written only
//!   when every component it depends on is ours and `Ready` in this pass
//!   (otherwise it is `Pending`, naming what it waits for);
//! - **never degrade what serves**: an upstream error or wait leaves the
//!   dependants as they are (they are not written at all in that pass);
//! - **ownership**: a resource that exists and is not this stack's is a
//!   `NameConflict` and is never written, nor is anything that lives inside it;
//! - **deletion preflight**: before the first delete, every component is
//!   observed and checked for what would block its deletion; any problem
//!   stalls the deletion with nothing deleted;
//! - **paused**: observe and diff only; differences are reported, not repaired.
//!
//! Components implement [`Component`]; [`Node`] is its object-safe face, so
//! one graph holds components of every kind.

use futures::future::BoxFuture;

use crate::api::{ComponentName, ComponentState, ComponentStatus};
use crate::components::{
    Change, Component, Ctx, Deletion, Output, Progress, Report, Resolved, State, describe,
};
use crate::error::{Error, ErrorClass, Result};
use crate::status::Phase;

/// What one component did in one pass.
#[derive(Debug)]
pub enum Outcome {
    /// Exists, is ours and matches the spec (after the writes of this pass).
    Ready { created: bool, changes: Vec<Change> },
    /// AWS is still working on it.
    Progressing {
        created: bool,
        changes: Vec<Change>,
        progress: Progress,
    },
    /// Differs from the spec (or is missing) and the stack is paused.
    Paused { message: String },
    /// Not touched: these dependencies are not ours and ready in this pass.
    Pending { waiting_for: Vec<ComponentName> },
    /// The pass failed for this component (nothing after the failure was written).
    Failed(Error),
    /// Switched off in the spec and removed (`removed`: in this pass).
    Disabled { removed: bool },
    /// Deleted (or was never there, or is not this stack's and left in place).
    Deleted { note: Option<String> },
    /// Deletion takes more passes.
    Deleting(String),
}

impl Outcome {
    fn is_ready(&self) -> bool {
        matches!(self, Outcome::Ready { .. })
    }
    fn is_gone(&self) -> bool {
        matches!(self, Outcome::Disabled { .. } | Outcome::Deleted { .. })
    }
}

/// One component's result, with its AWS id.
#[derive(Debug)]
pub struct Record {
    pub name: ComponentName,
    pub id: String,
    pub outcome: Outcome,
}

/// The object-safe face of a [`Component`] (implemented for every component).
pub trait Node: Send + Sync {
    fn name(&self) -> ComponentName;
    fn id(&self) -> String;
    /// Observe, check ownership, create or repair: one pass of one component.
    fn reconcile<'a>(&'a self, cx: &'a Ctx<'a>) -> BoxFuture<'a, (Outcome, String, Vec<Output>)>;
    /// Deletion preflight: is it there, is it ours, can it be deleted?
    fn inspect<'a>(&'a self, cx: &'a Ctx<'a>) -> BoxFuture<'a, Result<Presence>>;
    /// Delete it if it is there and ours.
    fn remove<'a>(&'a self, cx: &'a Ctx<'a>) -> BoxFuture<'a, Result<Deletion>>;
}

/// What the deletion preflight found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    Absent,
    Ours,
    /// Exists but belongs to someone else (who): never deleted.
    NotOurs(String),
}

impl<C: Component> Node for C {
    fn name(&self) -> ComponentName {
        Component::name(self)
    }
    fn id(&self) -> String {
        Component::id(self)
    }
    fn reconcile<'a>(&'a self, cx: &'a Ctx<'a>) -> BoxFuture<'a, (Outcome, String, Vec<Output>)> {
        Box::pin(drive(self, cx))
    }
    fn inspect<'a>(&'a self, cx: &'a Ctx<'a>) -> BoxFuture<'a, Result<Presence>> {
        Box::pin(async move {
            let Some(seen) = self.observe(cx).await? else {
                return Ok(Presence::Absent);
            };
            if let Some(owner) = self.ownership(cx, &seen).owner() {
                return Ok(Presence::NotOurs(owner));
            }
            self.preflight_delete(cx, &seen).await?;
            Ok(Presence::Ours)
        })
    }
    fn remove<'a>(&'a self, cx: &'a Ctx<'a>) -> BoxFuture<'a, Result<Deletion>> {
        Box::pin(delete_one(cx, self))
    }
}

fn name_conflict<C: Component>(c: &C, owner: String) -> Error {
    Error::NameConflict {
        kind: c.kind(),
        name: c.id(),
        owner,
    }
}

/// One pass of one component; the outcome, its id and its outputs.
async fn drive<C: Component>(c: &C, cx: &Ctx<'_>) -> (Outcome, String, Vec<Output>) {
    let mut id = c.id();
    let mut outputs = Vec::new();
    let outcome = match drive_inner(c, cx, &mut id, &mut outputs).await {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(component = %c.name(), error = %e, "component failed");
            Outcome::Failed(e)
        }
    };
    (outcome, id, outputs)
}

async fn drive_inner<C: Component>(
    c: &C,
    cx: &Ctx<'_>,
    id: &mut String,
    outputs: &mut Vec<Output>,
) -> Result<Outcome> {
    let (seen, created) = match c.observe(cx).await? {
        Some(seen) => (seen, false),
        None if cx.dry_run => {
            return Ok(Outcome::Paused {
                message: format!("{} does not exist; creation paused", c.kind()),
            });
        }
        None => {
            let made = c.create(cx).await?;
            tracing::info!(component = %c.name(), id = %c.id(), "created");
            if let Some(progress) = made.progress {
                return Ok(Outcome::Progressing {
                    created: true,
                    changes: vec![],
                    progress,
                });
            }
            match c.observe(cx).await? {
                Some(seen) => (seen, true),
                None => {
                    return Ok(Outcome::Progressing {
                        created: true,
                        changes: vec![],
                        progress: Progress::new(
                            "NotVisibleYet",
                            format!("{} {} created, not visible yet", c.kind(), c.id()),
                        ),
                    });
                }
            }
        }
    };
    if let Some(owner) = c.ownership(cx, &seen).owner() {
        return Err(name_conflict(c, owner));
    }
    if let Some(observed) = c.observed_id(&seen) {
        *id = observed;
    }
    let created = created || !c.exists(&seen);
    outputs.extend(c.outputs(cx, &seen));
    if let Some(progress) = c.wait(&seen) {
        return Ok(Outcome::Progressing {
            created,
            changes: vec![],
            progress,
        });
    }
    let changes = c.diff(cx, &seen)?;
    if changes.is_empty() {
        return Ok(match c.settling(&seen) {
            Some(progress) => Outcome::Progressing {
                created,
                changes,
                progress,
            },
            None => Outcome::Ready { created, changes },
        });
    }
    if cx.dry_run {
        return Ok(Outcome::Paused {
            message: describe(&changes),
        });
    }
    let updated = c.update(cx, &seen, &changes).await?;
    if !updated.changes.is_empty() {
        tracing::info!(component = %c.name(), changes = %describe(&updated.changes), "updated");
    }
    Ok(match updated.progress.or_else(|| c.settling(&seen)) {
        Some(progress) => Outcome::Progressing {
            created,
            changes: updated.changes,
            progress,
        },
        None => Outcome::Ready {
            created,
            changes: updated.changes,
        },
    })
}

/// One component on its own, as a [`Report`] (tests and tools).
pub async fn reconcile_one<C: Component>(cx: &Ctx<'_>, c: &C) -> Result<Report> {
    let (outcome, id, _) = drive(c, cx).await;
    let name = c.name().as_str().to_string();
    let report = |state, created, changes| Report {
        name: name.clone(),
        id: id.clone(),
        state,
        created,
        changes,
    };
    match outcome {
        Outcome::Ready { created, changes } => Ok(report(State::Ready, created, changes)),
        Outcome::Progressing {
            created,
            changes,
            progress,
        } => Ok(report(progress.into(), created, changes)),
        Outcome::Paused { message } => Ok(report(State::Paused { message }, false, vec![])),
        Outcome::Failed(e) => Err(e),
        other => Err(Error::Internal(format!(
            "unexpected outcome of a reconcile: {other:?}"
        ))),
    }
}

/// Delete one component if it exists and is ours (a resource of someone else
/// is left in place and counts as gone for this stack).
pub async fn delete_one<C: Component>(cx: &Ctx<'_>, c: &C) -> Result<Deletion> {
    let Some(seen) = c.observe(cx).await? else {
        return Ok(Deletion::Absent);
    };
    if let Some(owner) = c.ownership(cx, &seen).owner() {
        tracing::warn!(component = %c.name(), id = %c.id(), owner, "not deleting what is not this stack's");
        return Ok(Deletion::Absent);
    }
    let r = c.delete(cx, &seen).await?;
    if r == Deletion::Gone {
        tracing::info!(component = %c.name(), id = %c.id(), "deleted");
    }
    Ok(r)
}

/// One node of the stack's graph.
pub struct Entry {
    pub node: Box<dyn Node>,
    /// Written only when all of these are ours and ready in this pass.
    pub depends_on: Vec<ComponentName>,
    /// The resource this one is a part of (notification rules → upload
    /// bucket): never written, nor deleted, unless the host is ours.
    pub host: Option<ComponentName>,
    /// False: switched off in the spec; removed if present.
    pub enabled: bool,
}

impl Entry {
    pub fn new(node: impl Node + 'static) -> Self {
        Self {
            node: Box::new(node),
            depends_on: vec![],
            host: None,
            enabled: true,
        }
    }
    pub fn after(mut self, deps: impl IntoIterator<Item = ComponentName>) -> Self {
        self.depends_on.extend(deps);
        self
    }
    /// A part of `host` (implies depending on it).
    pub fn inside(mut self, host: ComponentName) -> Self {
        self.host = Some(host);
        if !self.depends_on.contains(&host) {
            self.depends_on.push(host);
        }
        self
    }
    pub fn enabled(mut self, on: bool) -> Self {
        self.enabled = on;
        self
    }
}

/// The stack as data: every component in dependency order.
pub struct Graph {
    entries: Vec<Entry>,
}

impl Graph {
    /// Check that names are unique and every dependency comes earlier.
    pub fn new(entries: Vec<Entry>) -> Result<Self> {
        for (i, e) in entries.iter().enumerate() {
            let name = e.node.name();
            if entries[..i].iter().any(|x| x.node.name() == name) {
                return Err(Error::Internal(format!("component {name} planned twice")));
            }
            for d in &e.depends_on {
                if !entries[..i].iter().any(|x| x.node.name() == *d) {
                    return Err(Error::Internal(format!(
                        "component {name} depends on {d}, which is not planned before it"
                    )));
                }
            }
        }
        Ok(Self { entries })
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Names in walk order.
    pub fn names(&self) -> Vec<ComponentName> {
        self.entries.iter().map(|e| e.node.name()).collect()
    }

    /// Entries that depend on `name`.
    fn dependants(&self, name: ComponentName) -> impl Iterator<Item = &Entry> {
        self.entries
            .iter()
            .filter(move |e| e.depends_on.contains(&name))
    }

    /// Bring every enabled component in line with the spec, in dependency
    /// order; then remove the switched-off ones, dependants first.
    pub async fn apply(&self, cx: &Ctx<'_>) -> Pass {
        let mut pass = Pass::default();
        for e in self.entries.iter().filter(|e| e.enabled) {
            let waiting_for: Vec<ComponentName> = e
                .depends_on
                .iter()
                .copied()
                .filter(|d| !pass.is_ready(*d))
                .collect();
            if !waiting_for.is_empty() {
                pass.push(e.node.name(), e.node.id(), Outcome::Pending { waiting_for });
                continue;
            }
            let scoped = cx.with_inputs(&pass.resolved);
            let (outcome, id, outputs) = e.node.reconcile(&scoped).await;
            for o in outputs {
                pass.resolved.put(o);
            }
            pass.push(e.node.name(), id, outcome);
        }
        for e in self.entries.iter().rev().filter(|e| !e.enabled) {
            let outcome = if cx.dry_run {
                Outcome::Paused {
                    message: "switched off in the spec; removal paused".into(),
                }
            } else if let Some(blocker) = self
                .dependants(e.node.name())
                .find(|d| !pass.is_gone(d.node.name()))
            {
                Outcome::Deleting(format!(
                    "waiting for {} to be removed first",
                    blocker.node.name()
                ))
            } else if let Some(host) = e.host.filter(|h| !pass.is_ready(*h)) {
                Outcome::Pending {
                    waiting_for: vec![host],
                }
            } else {
                match e.node.remove(cx).await {
                    Ok(Deletion::Gone) => Outcome::Disabled { removed: true },
                    Ok(Deletion::Absent) => Outcome::Disabled { removed: false },
                    Ok(Deletion::InProgress(m)) => Outcome::Deleting(m),
                    Err(err) => Outcome::Failed(err),
                }
            };
            pass.push(e.node.name(), e.node.id(), outcome);
        }
        pass.reorder(&self.names());
        pass
    }

    /// Delete the stack: a preflight over every component, then deletes in
    /// reverse dependency order, each once everything depending on it is gone.
    pub async fn delete(&self, cx: &Ctx<'_>) -> Pass {
        let mut pass = Pass::default();
        // 1. Preflight: nothing is deleted unless everything can be.
        let mut presence = Vec::with_capacity(self.entries.len());
        let mut blocked = false;
        for e in &self.entries {
            let host_absent = e.host.is_some_and(|h| {
                presence
                    .iter()
                    .any(|(n, p): &(ComponentName, Presence)| *n == h && *p != Presence::Ours)
            });
            let p = if host_absent {
                Ok(Presence::Absent)
            } else {
                e.node.inspect(cx).await
            };
            match p {
                Ok(p) => presence.push((e.node.name(), p)),
                Err(err) => {
                    blocked = true;
                    presence.push((e.node.name(), Presence::Absent));
                    pass.push(e.node.name(), e.node.id(), Outcome::Failed(err));
                }
            }
        }
        if blocked {
            for e in &self.entries {
                if pass.get(e.node.name()).is_none() {
                    pass.push(
                        e.node.name(),
                        e.node.id(),
                        Outcome::Deleting(
                            "deletion preflight failed (see the failing components): nothing is deleted"
                                .into(),
                        ),
                    );
                }
            }
            pass.reorder(&self.names());
            return pass;
        }
        // 2. Reverse walk.
        for (e, (_, p)) in self.entries.iter().zip(&presence).rev() {
            let outcome = match p {
                Presence::Absent => Outcome::Deleted { note: None },
                Presence::NotOurs(owner) => Outcome::Deleted {
                    note: Some(format!("not this stack's ({owner}): left in place")),
                },
                Presence::Ours => {
                    if let Some(blocker) = self
                        .dependants(e.node.name())
                        .find(|d| !pass.is_gone(d.node.name()))
                    {
                        Outcome::Deleting(format!(
                            "waiting for {} to be deleted first",
                            blocker.node.name()
                        ))
                    } else {
                        match e.node.remove(cx).await {
                            Ok(Deletion::Gone | Deletion::Absent) => {
                                Outcome::Deleted { note: None }
                            }
                            Ok(Deletion::InProgress(m)) => Outcome::Deleting(m),
                            Err(err) => Outcome::Failed(err),
                        }
                    }
                }
            };
            pass.push(e.node.name(), e.node.id(), outcome);
        }
        pass.reorder(&self.names());
        pass
    }
}

/// Everything one walk found.
#[derive(Debug, Default)]
pub struct Pass {
    pub records: Vec<Record>,
    pub resolved: Resolved,
}

/// `a` is reported in preference to `b`: an error that needs a human
/// outranks a retryable one; otherwise the first one found stays.
pub fn outranks(a: &Error, b: &Error) -> bool {
    a.class() == ErrorClass::Stalled && b.class() == ErrorClass::Retryable
}

impl Pass {
    fn push(&mut self, name: ComponentName, id: String, outcome: Outcome) {
        self.records.push(Record { name, id, outcome });
    }

    pub fn get(&self, name: ComponentName) -> Option<&Record> {
        self.records.iter().find(|r| r.name == name)
    }

    fn is_ready(&self, name: ComponentName) -> bool {
        self.get(name).is_some_and(|r| r.outcome.is_ready())
    }

    fn is_gone(&self, name: ComponentName) -> bool {
        self.get(name).is_some_and(|r| r.outcome.is_gone())
    }

    fn reorder(&mut self, order: &[ComponentName]) {
        self.records
            .sort_by_key(|r| order.iter().position(|n| *n == r.name));
    }

    /// The error the stack reports (and the controller backs off on).
    pub fn error(&self) -> Option<&Error> {
        let mut best: Option<&Error> = None;
        for r in &self.records {
            if let Outcome::Failed(e) = &r.outcome
                && best.is_none_or(|b| outranks(e, b))
            {
                best = Some(e);
            }
        }
        best
    }

    /// The reported error, taken out of the pass (after status is written).
    pub fn into_error(self) -> Option<Error> {
        let mut best: Option<Error> = None;
        for r in self.records {
            if let Outcome::Failed(e) = r.outcome
                && best.as_ref().is_none_or(|b| outranks(&e, b))
            {
                best = Some(e);
            }
        }
        best
    }

    /// The conditions' view of an apply pass: an error, else paused
    /// differences, else work in progress (or waiting), else ready.
    pub fn phase(&self) -> Phase {
        if let Some(e) = self.error() {
            return Phase::of_error(e);
        }
        if let Some((name, message)) = self.records.iter().find_map(|r| match &r.outcome {
            Outcome::Paused { message } => Some((r.name, message)),
            _ => None,
        }) {
            return Phase::Progressing {
                reason: "Paused".into(),
                message: format!(
                    "{}=true: AWS writes are suspended; differences: {name}: {message}",
                    crate::api::PAUSED_ANNOTATION
                ),
            };
        }
        for r in &self.records {
            match &r.outcome {
                Outcome::Progressing { progress, .. } => {
                    return Phase::Progressing {
                        reason: progress.reason.clone(),
                        message: format!("{}: {}", r.name, progress.message),
                    };
                }
                Outcome::Deleting(m) => {
                    return Phase::Progressing {
                        reason: "Removing".into(),
                        message: format!("{}: {m}", r.name),
                    };
                }
                _ => {}
            }
        }
        if let Some((name, waiting)) = self.records.iter().find_map(|r| match &r.outcome {
            Outcome::Pending { waiting_for } => Some((r.name, waiting_for)),
            _ => None,
        }) {
            return Phase::Progressing {
                reason: "WaitingForDependency".into(),
                message: format!("{name}: waiting for {}", join(waiting)),
            };
        }
        Phase::Ready
    }

    /// The conditions' view of a deletion pass; `None` when everything is gone.
    pub fn deletion_phase(&self) -> Option<Phase> {
        if let Some(e) = self.error() {
            return Some(Phase::of_error(e));
        }
        self.records.iter().find_map(|r| match &r.outcome {
            Outcome::Deleting(m) => Some(Phase::Progressing {
                reason: "Deleting".into(),
                message: format!("{}: {m}", r.name),
            }),
            _ => None,
        })
    }

    /// `status.components`.
    pub fn statuses(&self) -> Vec<ComponentStatus> {
        self.records.iter().map(component_status).collect()
    }

    /// What was written in this pass, for events: (reason, note). `spec_changed`
    /// tells an update the user asked for from a drift repair.
    pub fn changes(&self, spec_changed: bool) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for r in &self.records {
            let (created, changes) = match &r.outcome {
                Outcome::Ready { created, changes } => (*created, changes),
                Outcome::Progressing {
                    created, changes, ..
                } => (*created, changes),
                Outcome::Disabled { removed: true } => {
                    out.push((
                        "Removed",
                        format!("removed {} {} (switched off)", r.name, r.id),
                    ));
                    continue;
                }
                _ => continue,
            };
            if created {
                let note = if changes.is_empty() {
                    format!("created {} {}", r.name, r.id)
                } else {
                    format!("created {} {} ({})", r.name, r.id, describe(changes))
                };
                out.push(("Created", note));
            } else if !changes.is_empty() {
                let reason = if spec_changed {
                    "Updated"
                } else {
                    "DriftRepaired"
                };
                out.push((reason, format!("{}: {}", r.name, describe(changes))));
            }
        }
        out
    }

    /// Components whose drift was repaired, with the number of fields.
    pub fn drift_repairs(&self) -> Vec<(ComponentName, usize)> {
        self.records
            .iter()
            .filter_map(|r| match &r.outcome {
                Outcome::Ready {
                    created: false,
                    changes,
                }
                | Outcome::Progressing {
                    created: false,
                    changes,
                    ..
                } if !changes.is_empty() => Some((r.name, changes.len())),
                _ => None,
            })
            .collect()
    }
}

fn join(names: &[ComponentName]) -> String {
    names
        .iter()
        .map(|n| n.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn component_status(r: &Record) -> ComponentStatus {
    let (state, message) = match &r.outcome {
        Outcome::Ready { created: true, .. } => (ComponentState::Ready, Some("created".into())),
        Outcome::Ready { changes, .. } if !changes.is_empty() => {
            (ComponentState::Ready, Some(describe(changes)))
        }
        Outcome::Ready { .. } => (ComponentState::Ready, None),
        Outcome::Progressing {
            created, progress, ..
        } => (
            if *created {
                ComponentState::Creating
            } else {
                ComponentState::Progressing
            },
            Some(format!("{}: {}", progress.reason, progress.message)),
        ),
        Outcome::Paused { message } => (ComponentState::Paused, Some(message.clone())),
        Outcome::Pending { waiting_for } => (
            ComponentState::Pending,
            Some(format!("waiting for {}", join(waiting_for))),
        ),
        Outcome::Failed(e @ Error::NameConflict { .. }) => {
            (ComponentState::Conflict, Some(e.status_message()))
        }
        Outcome::Failed(e) => (ComponentState::Error, Some(e.status_message())),
        Outcome::Disabled { .. } => (ComponentState::Disabled, None),
        Outcome::Deleted { note } => (ComponentState::Deleted, note.clone()),
        Outcome::Deleting(m) => (ComponentState::Deleting, Some(m.clone())),
    };
    ComponentStatus {
        name: r.name,
        id: Some(r.id.clone()),
        state,
        message,
    }
}

#[cfg(test)]
mod tests {
    //! The driver's rules, in-process and in milliseconds: fake components
    //! over an in-memory "cloud" that logs every write.

    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::api::ComponentName as N;
    use crate::aws::AwsClients;
    use crate::components::{Created, Updated};
    use crate::naming::{Ownership, StackId};

    #[derive(Debug, Clone, PartialEq)]
    struct Res {
        ours: bool,
        value: u32,
        busy: bool,
        /// Passes its deletion still takes.
        deleting_passes: u32,
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Fault {
        Throttled,
        Denied,
    }

    #[derive(Default)]
    struct World {
        res: BTreeMap<N, Res>,
        faults: BTreeMap<N, Fault>,
        /// Deletion of these is blocked (a non-empty bucket).
        blocked: BTreeMap<N, usize>,
        writes: Vec<String>,
    }

    #[derive(Clone)]
    struct Fake {
        name: N,
        want: u32,
        world: Arc<Mutex<World>>,
    }

    fn fault(n: N, f: Fault) -> Error {
        let (code, class) = match f {
            Fault::Throttled => ("ThrottlingException", ErrorClass::Retryable),
            Fault::Denied => ("AccessDenied", ErrorClass::Stalled),
        };
        Error::Aws {
            action: format!("fake:Read{n}"),
            code: code.into(),
            message: "injected".into(),
            class,
        }
    }

    impl Fake {
        fn w(&self) -> std::sync::MutexGuard<'_, World> {
            self.world.lock().unwrap()
        }
    }

    impl Component for Fake {
        type Observed = Res;
        fn name(&self) -> N {
            self.name
        }
        fn kind(&self) -> &'static str {
            "fake resource"
        }
        fn id(&self) -> String {
            format!("fake:{}", self.name)
        }
        async fn observe(&self, _cx: &Ctx<'_>) -> Result<Option<Res>> {
            let w = self.w();
            if let Some(f) = w.faults.get(&self.name) {
                return Err(fault(self.name, *f));
            }
            Ok(w.res.get(&self.name).cloned())
        }
        fn ownership(&self, _cx: &Ctx<'_>, seen: &Res) -> Ownership {
            if seen.ours {
                Ownership::Ours
            } else {
                Ownership::OtherStack("other/stack".into())
            }
        }
        fn wait(&self, seen: &Res) -> Option<Progress> {
            seen.busy.then(|| Progress::new("Busy", "busy"))
        }
        fn diff(&self, _cx: &Ctx<'_>, seen: &Res) -> Result<Vec<Change>> {
            Ok(if seen.value == self.want {
                vec![]
            } else {
                vec![Change::new("value", seen.value, self.want)]
            })
        }
        async fn create(&self, _cx: &Ctx<'_>) -> Result<Created> {
            let mut w = self.w();
            w.writes.push(format!("create {}", self.name));
            w.res.insert(
                self.name,
                Res {
                    ours: true,
                    value: self.want,
                    busy: false,
                    deleting_passes: 0,
                },
            );
            Ok(Created::done())
        }
        async fn update(&self, _cx: &Ctx<'_>, _seen: &Res, changes: &[Change]) -> Result<Updated> {
            let mut w = self.w();
            w.writes.push(format!("update {}", self.name));
            if let Some(r) = w.res.get_mut(&self.name) {
                r.value = self.want;
            }
            Ok(Updated::all(changes))
        }
        async fn preflight_delete(&self, _cx: &Ctx<'_>, _seen: &Res) -> Result<()> {
            match self.w().blocked.get(&self.name) {
                Some(count) => Err(Error::BucketNotEmpty {
                    bucket: Component::id(self),
                    count: *count,
                    more: "",
                }),
                None => Ok(()),
            }
        }
        async fn delete(&self, _cx: &Ctx<'_>, _seen: &Res) -> Result<Deletion> {
            let mut w = self.w();
            w.writes.push(format!("delete {}", self.name));
            let Some(r) = w.res.get_mut(&self.name) else {
                return Ok(Deletion::Gone);
            };
            if r.deleting_passes > 0 {
                r.deleting_passes -= 1;
                return Ok(Deletion::InProgress("still deleting".into()));
            }
            w.res.remove(&self.name);
            Ok(Deletion::Gone)
        }
    }

    fn offline_clients() -> AwsClients {
        use aws_config::{BehaviorVersion, Region, SdkConfig};
        // Never called: the fake components do no I/O.
        let cfg = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .build();
        AwsClients::from_sdk_config(&cfg)
    }

    /// bucket ─► role ─► function ─► permission (inside function)
    /// bucket ─► notifications (inside bucket, after permission)
    /// oac (switchable) ─► distribution ─► grant (inside bucket)
    struct Setup {
        world: Arc<Mutex<World>>,
        aws: AwsClients,
        id: StackId,
    }

    impl Setup {
        fn new() -> Self {
            Self {
                world: Arc::default(),
                aws: offline_clients(),
                id: StackId::new("ns", "s", "dev"),
            }
        }
        fn fake(&self, name: N, want: u32) -> Fake {
            Fake {
                name,
                want,
                world: self.world.clone(),
            }
        }
        fn graph(&self, want: u32, cdn: bool) -> Graph {
            let f = |n| self.fake(n, want);
            Graph::new(vec![
                Entry::new(f(N::UploadBucket)),
                Entry::new(f(N::ProcessorRole)).after([N::UploadBucket]),
                Entry::new(f(N::ProcessorFunction)).after([N::ProcessorRole, N::UploadBucket]),
                Entry::new(f(N::S3InvokePermission)).inside(N::ProcessorFunction),
                Entry::new(f(N::UploadNotifications))
                    .inside(N::UploadBucket)
                    .after([N::S3InvokePermission]),
                Entry::new(f(N::OriginAccessControl)).enabled(cdn),
                Entry::new(f(N::Distribution))
                    .after([N::OriginAccessControl, N::UploadBucket])
                    .enabled(cdn),
                Entry::new(f(N::WebpCdnGrant))
                    .inside(N::UploadBucket)
                    .after([N::Distribution])
                    .enabled(cdn),
            ])
            .unwrap()
        }
        async fn apply(&self, graph: &Graph, paused: bool) -> Pass {
            graph.apply(&Ctx::new(&self.aws, &self.id, paused)).await
        }
        async fn delete(&self, graph: &Graph) -> Pass {
            graph.delete(&Ctx::new(&self.aws, &self.id, false)).await
        }
        fn writes(&self) -> Vec<String> {
            std::mem::take(&mut self.world.lock().unwrap().writes)
        }
        fn set(&self, n: N, f: impl FnOnce(&mut Res)) {
            let mut w = self.world.lock().unwrap();
            let r = w.res.get_mut(&n).unwrap();
            f(r);
        }
        fn state(pass: &Pass, n: N) -> ComponentState {
            pass.statuses()
                .into_iter()
                .find(|s| s.name == n)
                .unwrap()
                .state
        }
    }

    fn names(writes: &[String], verb: &str) -> Vec<String> {
        writes
            .iter()
            .filter_map(|w| w.strip_prefix(&format!("{verb} ")).map(str::to_string))
            .collect()
    }

    #[tokio::test]
    async fn creates_in_dependency_order_then_steady_state_writes_nothing() {
        let s = Setup::new();
        let g = s.graph(1, true);
        let pass = s.apply(&g, false).await;
        assert_eq!(pass.phase(), Phase::Ready, "{:?}", pass.statuses());
        assert_eq!(
            names(&s.writes(), "create"),
            [
                "upload-bucket",
                "processor-role",
                "processor-function",
                "s3-invoke-permission",
                "upload-notifications",
                "origin-access-control",
                "distribution",
                "webp-cdn-grant"
            ]
        );
        let events = pass.changes(true);
        assert_eq!(events.len(), 8);
        assert!(events.iter().all(|(reason, _)| *reason == "Created"));
        let pass = s.apply(&g, false).await;
        assert_eq!(pass.phase(), Phase::Ready);
        assert!(s.writes().is_empty(), "a steady pass writes nothing");
        assert!(pass.changes(false).is_empty());
    }

    #[tokio::test]
    async fn s1_nothing_is_written_through_a_name_the_stack_does_not_own() {
        let s = Setup::new();
        s.world.lock().unwrap().res.insert(
            N::UploadBucket,
            Res {
                ours: false,
                value: 7,
                busy: false,
                deleting_passes: 0,
            },
        );
        let g = s.graph(1, true);
        let pass = s.apply(&g, false).await;
        let writes = s.writes();
        assert_eq!(
            Setup::state(&pass, N::UploadBucket),
            ComponentState::Conflict
        );
        for n in [
            N::ProcessorRole,
            N::ProcessorFunction,
            N::UploadNotifications,
            N::Distribution,
            N::WebpCdnGrant,
        ] {
            assert_eq!(Setup::state(&pass, n), ComponentState::Pending, "{n}");
            assert!(
                !writes.iter().any(|w| w.ends_with(n.as_str())),
                "{n}: {writes:?}"
            );
        }
        // What does not depend on it goes on; the other stack's bucket is untouched.
        assert_eq!(names(&writes, "create"), ["origin-access-control"]);
        assert_eq!(s.world.lock().unwrap().res[&N::UploadBucket].value, 7);
        match pass.phase() {
            Phase::Stalled { reason, message } => {
                assert_eq!(reason, "NameConflict");
                assert!(message.contains("other/stack"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        // Deleting it never deletes the other stack's bucket, nor what lives in it.
        let pass = s.delete(&g).await;
        assert!(pass.deletion_phase().is_none(), "{:?}", pass.statuses());
        assert!(s.world.lock().unwrap().res.contains_key(&N::UploadBucket));
        let writes = s.writes();
        assert!(!writes.iter().any(|w| w.contains("upload-")), "{writes:?}");
    }

    #[tokio::test]
    async fn s2_an_upstream_failure_never_rewrites_what_serves() {
        let s = Setup::new();
        let g = s.graph(1, true);
        s.apply(&g, false).await;
        s.writes();
        // The grant drifts and, in the same pass, the distribution cannot be read.
        s.set(N::WebpCdnGrant, |r| r.value = 42);
        s.world
            .lock()
            .unwrap()
            .faults
            .insert(N::Distribution, Fault::Throttled);
        for _ in 0..3 {
            let pass = s.apply(&g, false).await;
            assert_eq!(
                Setup::state(&pass, N::WebpCdnGrant),
                ComponentState::Pending
            );
            assert_eq!(Setup::state(&pass, N::Distribution), ComponentState::Error);
            match pass.phase() {
                Phase::Progressing { reason, .. } => assert_eq!(reason, "Throttled"),
                other => panic!("{other:?}"),
            }
        }
        assert!(s.writes().is_empty());
        assert_eq!(s.world.lock().unwrap().res[&N::WebpCdnGrant].value, 42);
        // Once the distribution answers again, the grant is repaired.
        s.world.lock().unwrap().faults.clear();
        let pass = s.apply(&g, false).await;
        assert_eq!(s.writes(), ["update webp-cdn-grant"]);
        assert_eq!(pass.changes(false)[0].0, "DriftRepaired");
        assert_eq!(pass.drift_repairs(), [(N::WebpCdnGrant, 1)]);
    }

    #[tokio::test]
    async fn a_busy_component_is_waited_for_and_gates_its_dependants() {
        let s = Setup::new();
        let g = s.graph(1, false);
        s.apply(&g, false).await;
        s.writes();
        s.set(N::ProcessorRole, |r| {
            r.busy = true;
            r.value = 5
        });
        s.set(N::S3InvokePermission, |r| r.value = 9);
        let pass = s.apply(&g, false).await;
        assert!(s.writes().is_empty());
        assert_eq!(
            Setup::state(&pass, N::ProcessorRole),
            ComponentState::Progressing
        );
        assert_eq!(
            Setup::state(&pass, N::ProcessorFunction),
            ComponentState::Pending
        );
        assert_eq!(
            pass.phase(),
            Phase::Progressing {
                reason: "Busy".into(),
                message: "processor-role: busy".into()
            }
        );
    }

    #[tokio::test]
    async fn s3_deletion_preflight_stalls_with_nothing_deleted() {
        let s = Setup::new();
        let g = s.graph(1, true);
        s.apply(&g, false).await;
        s.writes();
        s.world.lock().unwrap().blocked.insert(N::UploadBucket, 1);
        for _ in 0..2 {
            let pass = s.delete(&g).await;
            assert!(s.writes().is_empty(), "nothing may be deleted");
            match pass.deletion_phase() {
                Some(Phase::Stalled { reason, message }) => {
                    assert_eq!(reason, "BucketNotEmpty");
                    assert!(message.contains("fake:upload-bucket"), "{message}");
                    assert!(message.contains("1 object"), "{message}");
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(s.world.lock().unwrap().res.len(), 8);
        // Unblocked: dependants go first, the distribution takes two passes and
        // everything it depends on waits for it.
        s.world.lock().unwrap().blocked.clear();
        s.set(N::Distribution, |r| r.deleting_passes = 1);
        let pass = s.delete(&g).await;
        let first = names(&s.writes(), "delete");
        assert_eq!(
            first,
            [
                "webp-cdn-grant",
                "distribution",
                "upload-notifications",
                "s3-invoke-permission",
                "processor-function",
                "processor-role"
            ]
        );
        assert_eq!(
            Setup::state(&pass, N::UploadBucket),
            ComponentState::Deleting
        );
        assert_eq!(
            Setup::state(&pass, N::OriginAccessControl),
            ComponentState::Deleting
        );
        assert!(matches!(
            pass.deletion_phase(),
            Some(Phase::Progressing { .. })
        ));
        let pass = s.delete(&g).await;
        assert_eq!(
            names(&s.writes(), "delete"),
            ["distribution", "origin-access-control", "upload-bucket"]
        );
        assert!(pass.deletion_phase().is_none());
        assert!(s.world.lock().unwrap().res.is_empty());
    }

    #[tokio::test]
    async fn s5_access_denied_is_never_taken_for_gone() {
        let s = Setup::new();
        let g = s.graph(1, true);
        s.apply(&g, false).await;
        s.writes();
        s.world
            .lock()
            .unwrap()
            .faults
            .insert(N::ProcessorRole, Fault::Denied);
        let pass = s.delete(&g).await;
        assert!(s.writes().is_empty());
        match pass.deletion_phase() {
            Some(Phase::Stalled { reason, message }) => {
                assert_eq!(reason, "AccessDenied");
                assert!(message.contains("fake:Readprocessor-role"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let mut pass = pass;
        let err = std::mem::take(&mut pass.records)
            .into_iter()
            .find_map(|r| match r.outcome {
                Outcome::Failed(e) => Some(e),
                _ => None,
            })
            .unwrap();
        assert_eq!(err.reason(), "AccessDenied");
    }

    #[tokio::test]
    async fn a_stalled_error_outranks_a_retryable_one_found_first() {
        let s = Setup::new();
        let g = s.graph(1, true);
        s.apply(&g, false).await;
        {
            let mut w = s.world.lock().unwrap();
            w.faults.insert(N::ProcessorRole, Fault::Throttled);
            w.faults.insert(N::OriginAccessControl, Fault::Denied);
        }
        let pass = s.apply(&g, false).await;
        assert_eq!(
            pass.error().map(Error::reason).as_deref(),
            Some("AccessDenied")
        );
        assert_eq!(
            pass.into_error().map(|e| e.reason()).as_deref(),
            Some("AccessDenied")
        );
        let pass = s.delete(&g).await;
        assert_eq!(
            pass.error().map(Error::reason).as_deref(),
            Some("AccessDenied")
        );
    }

    #[tokio::test]
    async fn paused_observes_and_reports_but_never_writes() {
        let s = Setup::new();
        let g = s.graph(1, true);
        let pass = s.apply(&g, true).await;
        assert!(s.writes().is_empty());
        assert_eq!(Setup::state(&pass, N::UploadBucket), ComponentState::Paused);
        match pass.phase() {
            Phase::Progressing { reason, message } => {
                assert_eq!(reason, "Paused");
                assert!(message.contains("upload-bucket"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        s.apply(&g, false).await;
        s.writes();
        s.set(N::ProcessorFunction, |r| r.value = 3);
        let pass = s.apply(&s.graph(1, false), true).await;
        assert!(s.writes().is_empty(), "paused: no repair and no removal");
        assert_eq!(
            Setup::state(&pass, N::ProcessorFunction),
            ComponentState::Paused
        );
        assert_eq!(Setup::state(&pass, N::Distribution), ComponentState::Paused);
    }

    #[tokio::test]
    async fn switched_off_components_are_removed_dependants_first() {
        let s = Setup::new();
        s.apply(&s.graph(1, true), false).await;
        s.writes();
        s.set(N::Distribution, |r| r.deleting_passes = 1);
        let off = s.graph(1, false);
        let pass = s.apply(&off, false).await;
        assert_eq!(
            names(&s.writes(), "delete"),
            ["webp-cdn-grant", "distribution"]
        );
        assert_eq!(
            Setup::state(&pass, N::WebpCdnGrant),
            ComponentState::Disabled
        );
        assert_eq!(
            Setup::state(&pass, N::Distribution),
            ComponentState::Deleting
        );
        assert_eq!(
            Setup::state(&pass, N::OriginAccessControl),
            ComponentState::Deleting
        );
        let pass = s.apply(&off, false).await;
        assert_eq!(
            names(&s.writes(), "delete"),
            ["distribution", "origin-access-control"]
        );
        assert_eq!(pass.phase(), Phase::Ready);
        assert_eq!(
            pass.changes(true)
                .iter()
                .filter(|(r, _)| *r == "Removed")
                .count(),
            2
        );
    }

    #[test]
    fn the_graph_refuses_a_dependency_planned_after_its_dependant() {
        let s = Setup::new();
        let e = Graph::new(vec![
            Entry::new(s.fake(N::ProcessorRole, 1)).after([N::UploadBucket]),
            Entry::new(s.fake(N::UploadBucket, 1)),
        ])
        .err()
        .unwrap();
        assert!(e.to_string().contains("upload-bucket"), "{e}");
        let e = Graph::new(vec![
            Entry::new(s.fake(N::UploadBucket, 1)),
            Entry::new(s.fake(N::UploadBucket, 1)),
        ])
        .err()
        .unwrap();
        assert!(e.to_string().contains("twice"), "{e}");
    }
}
