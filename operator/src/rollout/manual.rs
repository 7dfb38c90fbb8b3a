//! Manual commands, applied to the remembered status before the state machine's regular step.
//!
//! [`apply`] is pure, like the rest of the machine: from the status as last written, the
//! commands in the annotations ([`Commands`]) and the time, it computes the status the regular
//! step should start from, plus the transitions, the handled tokens and the record of what the
//! commands did. Because a one-shot command's token is stored with the status it produced, a
//! command acts exactly once: the next reconcile finds its token handled and skips it, and a
//! reconcile whose status write is refused (a conflict) records and reports nothing, so its rerun
//! acts afresh on the fresh object.
//!
//! Order within one reconcile: pause or resume first, then abort, retry, promote. Abort before
//! retry lets "abort + retry" restart a canary from its first step; abort before promote makes
//! the pair an abort (promote then finds no rollout and is ignored, which is the safe reading).

use auralguard_crds::manual::Commands;
use auralguard_crds::{
    AudioDetectorStatus, CommandRecord, CommandResult, HandledCommands, ManualCommand,
    RolloutOutcome, RolloutPhase, RolloutState,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::{result, Input, Transition};

/// The effect of the commands on one reconcile.
#[derive(Debug)]
pub(super) struct Applied {
    /// The status the regular step starts from.
    pub status: AudioDetectorStatus,
    /// The manual transitions, in the order they happened (each becomes an Event).
    pub transitions: Vec<Transition>,
    /// The tokens handled so far, this reconcile's included.
    pub handled: HandledCommands,
    /// The last command handled, this reconcile's if any.
    pub last_command: Option<CommandRecord>,
}

/// Applies the commands that are new (a token not handled yet, a change of pause) to `input`'s
/// status.
pub(super) fn apply(input: &Input<'_>) -> Applied {
    let cmds: &Commands = input.commands;
    let mut out = Applied {
        status: input.status.clone(),
        transitions: Vec::new(),
        handled: input.status.handled_commands.clone(),
        last_command: input.status.last_command.clone(),
    };
    pause_or_resume(input, &mut out);

    if let Some(token) = new_token(cmds.abort.as_ref(), &mut out.handled.abort) {
        abort(input, &mut out, token);
    }
    if let Some(token) = new_token(cmds.retry.as_ref(), &mut out.handled.retry) {
        retry(input, &mut out, token);
    }
    if let Some(token) = new_token(cmds.promote.as_ref(), &mut out.handled.promote) {
        promote(input, &mut out, token);
    }
    out
}

/// The command's token when it has not been handled yet; marks it handled.
fn new_token(annotation: Option<&String>, handled: &mut Option<String>) -> Option<String> {
    let token = annotation?;
    if handled.as_ref() == Some(token) {
        return None;
    }
    *handled = Some(token.clone());
    Some(token.clone())
}

fn record(
    input: &Input<'_>,
    out: &mut Applied,
    command: ManualCommand,
    token: Option<String>,
    result: CommandResult,
    message: String,
) {
    out.last_command = Some(CommandRecord {
        command,
        token,
        result,
        message,
        at: Time(input.now),
    });
}

/// Ignores a one-shot command that makes no sense now: a Warning Event and a record say why.
fn ignore(input: &Input<'_>, out: &mut Applied, command: ManualCommand, token: String, why: &str) {
    out.transitions.push(Transition::CommandIgnored {
        command,
        token: token.clone(),
        reason: why.to_string(),
    });
    record(
        input,
        out,
        command,
        Some(token),
        CommandResult::Ignored,
        format!("ignored: {why}"),
    );
}

fn pause_or_resume(input: &Input<'_>, out: &mut Applied) {
    let now = input.now;
    let pause = input.commands.pause;
    let was = out.status.paused;
    out.status.paused = pause;
    if pause {
        // Also when already paused: a rollout that began while the detector was paused (never
        // by itself, but status may have been edited) gets its hold timed from now.
        if let Some(r) = out.status.rollout.as_mut() {
            r.paused_at.get_or_insert(Time(now));
        }
    } else if let Some(r) = out.status.rollout.as_mut() {
        resume(r, now);
    }
    if was == pause {
        return;
    }
    let holding = out.status.rollout.as_ref().map(|r| {
        format!(
            "the rollout of model version {} ({:?}, step {})",
            r.canary_version,
            r.phase,
            r.step.saturating_add(1)
        )
    });
    let (command, message) = if pause {
        out.transitions.push(Transition::Paused {
            holding: holding.clone(),
        });
        (
            ManualCommand::Pause,
            match holding {
                Some(h) => format!("holding {h}"),
                None => "no rollout starts until the pause is lifted".to_string(),
            },
        )
    } else {
        out.transitions.push(Transition::Resumed {
            continuing: holding.clone(),
        });
        (
            ManualCommand::Resume,
            match holding {
                Some(h) => format!("continuing {h}"),
                None => "rollouts may start again".to_string(),
            },
        )
    };
    record(input, out, command, None, CommandResult::Applied, message);
}

/// Ends a hold: the phase keeps the time it had run before the pause, no more.
fn resume(r: &mut RolloutState, now: Timestamp) {
    let Some(paused_at) = r.paused_at.take() else {
        return;
    };
    let ran = paused_at
        .0
        .duration_since(r.phase_started_at.0)
        .max(SignedDuration::ZERO);
    r.phase_started_at = Time(now.checked_sub(ran).unwrap_or(now));
}

fn abort(input: &Input<'_>, out: &mut Applied, token: String) {
    let Some(r) = out.status.rollout.take() else {
        return ignore(
            input,
            out,
            ManualCommand::Abort,
            token,
            "no rollout is running",
        );
    };
    let message = format!(
        "aborted by {} at step {} ({:?}); model version {} stays blocked until the model source \
         moves away or {} is set",
        auralguard_crds::manual::ABORT,
        r.step.saturating_add(1),
        r.phase,
        r.canary_version,
        auralguard_crds::manual::RETRY,
    );
    out.status.serving_model = Some(r.stable_model.clone());
    out.status.serving_version = Some(r.stable_version.clone());
    out.status.last_rollout = Some(result(input, &r, RolloutOutcome::ManuallyAborted, &message));
    out.transitions.push(Transition::ManualAbort {
        version: r.canary_version.clone(),
        serving: r.stable_version.clone(),
        token: token.clone(),
    });
    record(
        input,
        out,
        ManualCommand::Abort,
        Some(token),
        CommandResult::Applied,
        message,
    );
}

fn retry(input: &Input<'_>, out: &mut Applied, token: String) {
    let Some(last) = out.status.last_rollout.as_mut().filter(|l| l.blocks()) else {
        return ignore(
            input,
            out,
            ManualCommand::Retry,
            token,
            "no rolled-back or aborted model version is blocked",
        );
    };
    last.retried = true;
    let version = last.version.clone();
    let mut message = format!("model version {version} is no longer blocked");
    if out.status.paused {
        message.push_str("; its rollout starts when the pause is lifted");
    }
    out.transitions.push(Transition::ManualRetry {
        version,
        token: token.clone(),
    });
    record(
        input,
        out,
        ManualCommand::Retry,
        Some(token),
        CommandResult::Applied,
        message,
    );
}

fn promote(input: &Input<'_>, out: &mut Applied, token: String) {
    let paused = out.status.paused;
    let Some(r) = out.status.rollout.as_mut() else {
        return ignore(
            input,
            out,
            ManualCommand::Promote,
            token,
            "no rollout is running",
        );
    };
    if r.phase == RolloutPhase::Promoting {
        let why = format!(
            "model version {} is already being promoted",
            r.canary_version
        );
        return ignore(input, out, ManualCommand::Promote, token, &why);
    }
    let steps = input.policy.steps.len();
    let at_step = usize::try_from(r.step).unwrap_or(0) + 1;
    r.phase = RolloutPhase::Promoting;
    r.phase_started_at = Time(input.now);
    r.baseline = None;
    r.failed_scrapes = 0;
    r.last_scrape_error = None;
    r.inconclusive_windows = 0;
    r.promoted_manually = true;
    let version = r.canary_version.clone();
    let mut message = format!(
        "promoting model version {version} at step {at_step} of {steps}, skipping the remaining \
         steps and their analysis"
    );
    if paused {
        message.push_str("; the promotion completes when the pause is lifted");
    }
    out.transitions.push(Transition::ManualPromote {
        version,
        step: at_step,
        of: steps,
        token: token.clone(),
    });
    record(
        input,
        out,
        ManualCommand::Promote,
        Some(token),
        CommandResult::Applied,
        message,
    );
}
