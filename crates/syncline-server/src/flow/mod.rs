//! Flows: what happens to one inbox event. A flow has a trigger (a webhook source, event types
//! and an optional filter expression) and typed steps: fetch the HubSpot object, clean and check
//! its fields, find or create the ManyChat subscriber, set fields and tags, and send — or, as
//! its one step, hand the event's object to a pipeline (`pipeline: products_to_items`), which
//! reads it again from its source and writes it through its transforms and sink.
//!
//! Steps are checked when the config loads ([`Engine::new`]): templates must compile, and they
//! may use only `event`, `subscriber` and the `contact` properties `hubspot.get` fetches, so a
//! typo is a load error with its line instead of an empty greeting.
//!
//! Sends are verifiable: the message carries an `add_tag` action for the flow's mark, and a
//! subscriber who already has the mark is not sent to again. A crash between ManyChat's answer
//! and the inbox commit therefore never greets anyone twice (see `run.rs`).

mod run;

use std::collections::BTreeSet;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

pub use run::{Connections, Engine, Failure, Outcome, RecordPipeline};

/// One flow, as validated from the config.
#[derive(Debug, Clone)]
pub struct Flow {
    pub name: String,
    /// The webhook source whose events start it.
    pub source: String,
    /// Event types that start it (`contact.creation`…); empty: every type.
    pub events: Vec<String>,
    /// A minijinja expression over `event` that must be true for the flow to run.
    pub filter: Option<String>,
    pub steps: Vec<Step>,
    /// Attempts before an event that keeps failing transiently becomes a dead letter.
    pub max_attempts: u32,
    /// Events of one object run in `occurredAt` order, and one older than an event already run
    /// for that object is skipped as stale (audited `skipped_stale`), so the latest change wins
    /// however HubSpot orders its deliveries.
    pub ordered: bool,
}

impl Flow {
    pub fn triggered_by(&self, source: &str, event_type: &str) -> bool {
        self.source == source && (self.events.is_empty() || self.events.iter().any(|e| e == event_type))
    }

    /// The object type and properties of the flow's `hubspot.get` step, if it has one.
    pub fn hubspot_get(&self) -> Option<(&str, &[String])> {
        self.steps.iter().find_map(|s| match s {
            Step::HubSpotGet { object, properties } => Some((object.as_str(), properties.as_slice())),
            _ => None,
        })
    }

    /// The tag that marks a subscriber as sent to by this flow (`<flow>-sent` unless set).
    pub fn mark(&self) -> String {
        self.steps
            .iter()
            .find_map(|s| match s {
                Step::SendContent { mark, .. } | Step::SendFlow { mark, .. } => mark.clone(),
                _ => None,
            })
            .unwrap_or_else(|| format!("{}-sent", self.name))
    }
}

/// One step, as written in the config (`- hubspot.get: {…}`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub enum Step {
    /// Fetch the event's HubSpot object (its `objectId`) with these properties into `contact`,
    /// unless the event already carries them (backfilled events do). Cached for a minute.
    #[serde(rename = "hubspot.get")]
    HubSpotGet {
        /// `contacts` (default), `companies`, `deals` or a custom object type.
        #[serde(default = "contacts")]
        object: String,
        properties: Vec<String>,
    },
    /// At least one of these `contact` fields must be present and not blank, or the event is a
    /// dead letter (e.g. `[phone, email]`: nobody to write to).
    #[serde(rename = "require_any")]
    RequireAny(Vec<String>),
    /// Costa Rica phone numbers, normalized to `+506XXXXXXXX`; an invalid number is dropped (the
    /// email may still reach the person) and logged.
    #[serde(rename = "phone")]
    Phone(Vec<String>),
    /// Person names: trimmed, inner whitespace collapsed, characters other than letters, spaces,
    /// `'`, `-` and `.` removed, at most 50 characters.
    #[serde(rename = "name")]
    Name(Vec<String>),
    /// Find the ManyChat subscriber by phone, then by email (the `contact` fields named here);
    /// create one when none is found.
    #[serde(rename = "manychat.find_or_create_subscriber")]
    FindOrCreateSubscriber(SubscriberFields),
    /// Set ManyChat custom fields (by name) to rendered templates, 20 per call.
    #[serde(rename = "manychat.set_custom_fields")]
    SetCustomFields(IndexMap<String, String>),
    /// Add a tag (by name) to the subscriber.
    #[serde(rename = "manychat.add_tag")]
    AddTag(String),
    /// Send text messages (minijinja templates) as ManyChat content v2.
    #[serde(rename = "manychat.send_content")]
    SendContent {
        /// One template per message (at most 10).
        messages: Vec<String>,
        /// Required to reach someone outside the 24-hour window (e.g. `ACCOUNT_UPDATE`).
        message_tag: Option<String>,
        /// The tag that marks the subscriber as sent to (default `<flow>-sent`).
        mark: Option<String>,
    },
    /// Start a ManyChat flow by its namespace.
    #[serde(rename = "manychat.send_flow")]
    SendFlow {
        flow_ns: String,
        /// The tag that marks the subscriber as sent to (default `<flow>-sent`).
        mark: Option<String>,
    },
    /// Hand the event's object (a Stripe event's product) to this pipeline: it is read again
    /// from the pipeline's source — so the latest state is written, in whatever order events
    /// come — and written through its transforms and sink, as a run would. The flow's one step.
    #[serde(rename = "pipeline")]
    Pipeline(String),
}

fn contacts() -> String {
    "contacts".into()
}

/// Which `contact` fields feed the subscriber lookup and creation.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriberFields {
    /// The field with the WhatsApp number (looked up as a phone; created as `whatsapp_phone`).
    pub whatsapp_phone: Option<String>,
    /// The field with an SMS phone number.
    pub phone: Option<String>,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// The consent text the person agreed to; when set, new subscribers are opted in to SMS.
    pub consent_phrase: Option<String>,
    /// Create the subscriber when none is found (default true).
    #[serde(default = "yes")]
    pub create: bool,
}

fn yes() -> bool {
    true
}

/// What is wrong with a flow, and where: the step (0-based) when one step is at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct FlowError {
    pub flow: String,
    pub step: Option<usize>,
    pub message: String,
}

impl Step {
    /// The step's name as written in the config.
    pub fn name(&self) -> &'static str {
        match self {
            Step::HubSpotGet { .. } => "hubspot.get",
            Step::RequireAny(_) => "require_any",
            Step::Phone(_) => "phone",
            Step::Name(_) => "name",
            Step::FindOrCreateSubscriber(_) => "manychat.find_or_create_subscriber",
            Step::SetCustomFields(_) => "manychat.set_custom_fields",
            Step::AddTag(_) => "manychat.add_tag",
            Step::SendContent { .. } => "manychat.send_content",
            Step::SendFlow { .. } => "manychat.send_flow",
            Step::Pipeline(_) => "pipeline",
        }
    }

    fn is_manychat(&self) -> bool {
        self.name().starts_with("manychat.")
    }

    /// The step's templates, named for error messages.
    fn templates(&self) -> Vec<(String, &str)> {
        match self {
            Step::SetCustomFields(fields) => fields.iter().map(|(name, t)| (name.clone(), t.as_str())).collect(),
            Step::SendContent { messages, .. } => {
                messages.iter().enumerate().map(|(i, t)| (format!("messages[{i}]"), t.as_str())).collect()
            }
            _ => Vec::new(),
        }
    }
}

/// The checks that need no connector: step order and sizes, and what each step reads.
fn check_steps(flow: &Flow) -> Result<(), FlowError> {
    let fail = |step: usize, message: String| FlowError { flow: flow.name.clone(), step: Some(step), message };
    let fetched: Option<BTreeSet<&str>> = flow.hubspot_get().map(|(_, properties)| properties.iter().map(String::as_str).collect());
    let mut subscriber_found = false;
    let mut sends = 0;
    if let Some(i) = flow.steps.iter().position(|s| matches!(s, Step::Pipeline(_)))
        && flow.steps.len() > 1
    {
        return Err(fail(i, "a pipeline step is its flow's only step: the pipeline's transforms shape the record".into()));
    }
    for (i, step) in flow.steps.iter().enumerate() {
        let fields: Vec<&String> = match step {
            Step::RequireAny(f) | Step::Phone(f) | Step::Name(f) => f.iter().collect(),
            Step::FindOrCreateSubscriber(s) => {
                [&s.whatsapp_phone, &s.phone, &s.email, &s.first_name, &s.last_name].into_iter().flatten().collect()
            }
            _ => Vec::new(),
        };
        if let Some(fetched) = &fetched
            && let Some(missing) = fields.iter().find(|f| !fetched.contains(f.as_str()))
        {
            let message =
                format!("{} reads contact field {missing:?}, which hubspot.get does not fetch (add it to its properties)", step.name());
            return Err(fail(i, message));
        }
        match step {
            Step::HubSpotGet { properties, .. } if properties.is_empty() => {
                return Err(fail(i, "hubspot.get needs at least one property".into()));
            }
            Step::RequireAny(f) | Step::Phone(f) | Step::Name(f) if f.is_empty() => {
                return Err(fail(i, format!("{} needs at least one field", step.name())));
            }
            Step::FindOrCreateSubscriber(s) if s.whatsapp_phone.is_none() && s.phone.is_none() && s.email.is_none() => {
                return Err(fail(i, "manychat.find_or_create_subscriber needs whatsapp_phone, phone or email".into()));
            }
            Step::FindOrCreateSubscriber(_) => subscriber_found = true,
            Step::SendContent { messages, .. } if messages.is_empty() || messages.len() > 10 => {
                return Err(fail(i, format!("manychat.send_content takes 1 to 10 messages, not {}", messages.len())));
            }
            Step::SendContent { .. } | Step::SendFlow { .. } => sends += 1,
            Step::AddTag(tag) if tag.trim().is_empty() => return Err(fail(i, "manychat.add_tag needs a tag name".into())),
            _ => {}
        }
        if step.is_manychat() && !matches!(step, Step::FindOrCreateSubscriber(_)) && !subscriber_found {
            return Err(fail(i, format!("{} needs a manychat.find_or_create_subscriber step before it", step.name())));
        }
    }
    if sends > 1 {
        return Err(FlowError {
            flow: flow.name.clone(),
            step: None,
            message: "a flow sends at most once (one send_content or send_flow step), so its mark stays meaningful".into(),
        });
    }
    Ok(())
}
