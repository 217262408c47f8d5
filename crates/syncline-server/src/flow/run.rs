//! Running a flow on one event: the compiled flows, the connectors they call, and each step.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use indexmap::IndexMap;
use minijinja::Environment;
use serde_json::{Map, Value};
use syncline_connectors::hubspot::HubSpotApi;
use syncline_connectors::manychat::{Lookup, MAX_ACTIONS, ManyChatApi, NewSubscriber, Subscriber, TextMessage};
use syncline_core::{ConnectorError, ErrorClass, RecordError};
use syncline_resilience::ResponseCache;

use super::{Flow, FlowError, Step, SubscriberFields, check_steps};

/// The APIs flows may call; a flow whose steps need a missing one fails to load.
#[derive(Default)]
pub struct Connections {
    pub hubspot: Option<HubSpotApi>,
    pub manychat: Option<ManyChatApi>,
    /// The pipelines `pipeline` steps name, ready to take one record each.
    pub pipelines: BTreeMap<String, Arc<dyn RecordPipeline>>,
}

/// A pipeline as a flow's `pipeline` step uses it: one record at a time, by key.
pub trait RecordPipeline: Send + Sync {
    /// Reads the record of `key` again from the pipeline's source, runs the transforms and
    /// writes it to the sink; the sink's outcome for it.
    fn sync<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<syncline_core::Outcome, ConnectorError>>;

    /// How the services it calls are doing, for `/readyz`.
    fn health(&self) -> Vec<syncline_resilience::Health>;
}

/// How a flow ended for one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It sent its message (or started its ManyChat flow).
    Sent,
    /// The subscriber already had the flow's mark: an earlier attempt sent, so nothing was sent.
    AlreadySent,
    /// It ran without a send step.
    Done,
    /// The trigger's filter was false.
    Filtered,
    /// A `pipeline` step's sink created, updated or left alone the event's record.
    Created,
    Updated,
    Unchanged,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::AlreadySent => "already_sent",
            Outcome::Done => "done",
            Outcome::Filtered => "filtered",
            Outcome::Created => "created",
            Outcome::Updated => "updated",
            Outcome::Unchanged => "unchanged",
        }
    }
}

/// Why a flow stopped: the class decides between a retry and a dead letter; `rule` names the
/// step and `field` the contact field at fault, if one is.
pub type Failure = RecordError;

/// The loaded flows and what they need to run.
pub struct Engine {
    flows: Vec<Flow>,
    /// Every flow's templates and filters, compiled once at load, by [`template_name`].
    templates: Environment<'static>,
    connections: Connections,
    /// Fetched HubSpot objects, by `object/id`: a burst of events about one contact reads once.
    objects: ResponseCache<Map<String, Value>>,
}

/// What a step reads and writes.
struct State {
    event: Value,
    contact: Map<String, Value>,
    subscriber: Option<Subscriber>,
    /// Custom field values that travel in the next message as `set_field_value` actions.
    fields_in_message: Vec<(String, Value)>,
}

/// A template's name in the engine's environment: the flow, the step (none for the filter)
/// and the template's own name.
fn template_name(flow: &str, step: Option<usize>, name: &str) -> String {
    match step {
        Some(step) => format!("{flow}/{step}/{name}"),
        None => format!("{flow}/filter"),
    }
}

impl Engine {
    /// Checks every flow (steps, templates, filters, connections), compiles its templates and
    /// filter, and keeps them ready to run.
    pub fn new(flows: Vec<Flow>, connections: Connections) -> Result<Engine, FlowError> {
        let mut templates = Environment::new();
        for (i, flow) in flows.iter().enumerate() {
            check_steps(flow)?;
            check_templates(&templates, flow)?;
            compile(&mut templates, flow)?;
            check_connections(flow, &connections)?;
            if let Some(other) = flows[..i].iter().find(|o| o.source == flow.source && overlaps(&o.events, &flow.events)) {
                let message =
                    format!("flow {} already runs on these events of source {}; an event starts one flow", other.name, flow.source);
                return Err(FlowError { flow: flow.name.clone(), step: None, message });
            }
        }
        Ok(Engine { flows, templates, connections, objects: ResponseCache::new(Duration::from_secs(60), 10_000) })
    }

    /// The flow an event of `event_type` from `source` starts, if any.
    pub fn flow_for(&self, source: &str, event_type: &str) -> Option<&Flow> {
        self.flows.iter().find(|f| f.triggered_by(source, event_type))
    }

    /// Reads, in one batch call per object type (≤ 100 ids), the HubSpot objects that the
    /// `hubspot.get` steps of these events would fetch one by one, so a claimed batch of events
    /// spends one call of the portal's budget instead of one each. A failure only leaves the
    /// steps to fetch for themselves.
    pub async fn prefetch(&self, work: &[(&Flow, &Value)]) {
        let Some(hubspot) = &self.connections.hubspot else { return };
        let mut wanted: BTreeMap<(&str, &[String]), Vec<String>> = BTreeMap::new();
        for (flow, event) in work {
            let Some((object, properties)) = flow.hubspot_get() else { continue };
            let carried = event.get("properties").and_then(Value::as_object).is_some_and(|c| properties.iter().all(|p| c.contains_key(p)));
            let Some(id) = object_id(event) else { continue };
            let ids = wanted.entry((object, properties)).or_default();
            if !carried && !self.objects.contains(&format!("{object}/{id}")) && !ids.contains(&id) {
                ids.push(id);
            }
        }
        for ((object, properties), ids) in wanted {
            for chunk in ids.chunks(100) {
                let ids: Vec<&str> = chunk.iter().map(String::as_str).collect();
                match hubspot.batch_read(object, "hs_object_id", &ids, properties).await {
                    Ok(read) => {
                        for found in read.results {
                            self.objects.insert(&format!("{object}/{}", found.id), present_properties(found.properties)).await;
                        }
                    }
                    Err(e) => tracing::warn!(%object, error = %e, "batch read failed; each event fetches its own object"),
                }
            }
        }
    }

    /// How every service the flows call is doing, for `/readyz`.
    pub fn health(&self) -> Vec<syncline_resilience::Health> {
        let hubspot = self.connections.hubspot.iter().flat_map(HubSpotApi::health);
        let manychat = self.connections.manychat.iter().flat_map(ManyChatApi::health);
        hubspot.chain(manychat).chain(self.connections.pipelines.values().flat_map(|p| p.health())).collect()
    }

    /// Runs `flow` on one event's payload, step by step.
    pub async fn run(&self, flow: &Flow, event: Value) -> Result<Outcome, Failure> {
        let mut state = State { event, contact: Map::new(), subscriber: None, fields_in_message: Vec::new() };
        if flow.filter.is_some() && !self.passes_filter(flow, &state)? {
            return Ok(Outcome::Filtered);
        }
        let mut outcome = Outcome::Done;
        for (i, step) in flow.steps.iter().enumerate() {
            // a few custom fields set right before a message travel in it: one call to ManyChat
            // instead of two, and sendContent's 25/s instead of setCustomFields' 10/s
            if let Step::SetCustomFields(fields) = step
                && fields.len() < MAX_ACTIONS
                && matches!(flow.steps.get(i + 1), Some(Step::SendContent { .. }))
            {
                state.fields_in_message = self.render_fields(flow, i, fields, &state)?;
                continue;
            }
            if let Some(done) = self.step(flow, i, &mut state).await? {
                outcome = done;
            }
        }
        Ok(outcome)
    }

    /// Whether the event passes the flow's filter.
    fn passes_filter(&self, flow: &Flow, state: &State) -> Result<bool, Failure> {
        let filter = self.templates.get_template(&template_name(&flow.name, None, "")).map_err(|e| config("filter", &e))?;
        let rendered = filter.render(minijinja::context! { event => &state.event }).map_err(|e| data("filter", "-", &e))?;
        Ok(rendered == "1")
    }

    /// Runs step `i`; a send ends the flow with its outcome.
    async fn step(&self, flow: &Flow, i: usize, state: &mut State) -> Result<Option<Outcome>, Failure> {
        let step = &flow.steps[i];
        let rule = step.name();
        match step {
            Step::HubSpotGet { object, properties } => {
                state.contact = self.fetch(object, properties, &state.event).await.map_err(|e| connector(rule, e))?;
            }
            Step::RequireAny(fields) => require_any(state, fields)?,
            Step::Phone(fields) => normalize_phones(state, fields),
            Step::Name(fields) => clean_names(state, fields),
            Step::FindOrCreateSubscriber(fields) => state.subscriber = Some(self.find_or_create(fields, state).await?),
            Step::SetCustomFields(fields) => {
                let values = self.render_fields(flow, i, fields, state)?;
                self.manychat().set_custom_fields(&subscriber(state).id, &values).await.map_err(|e| connector(rule, e))?;
            }
            Step::AddTag(tag) => self.manychat().add_tag(&subscriber(state).id, tag).await.map_err(|e| connector(rule, e))?,
            Step::SendContent { messages, message_tag, .. } => {
                return self.send_content(flow, i, messages, message_tag.as_deref(), state).await.map(Some);
            }
            Step::SendFlow { flow_ns, .. } => return self.send_flow(flow, flow_ns, state).await.map(Some),
            Step::Pipeline(name) => return self.hand_to_pipeline(name, &state.event).await.map(Some),
        }
        Ok(None)
    }

    /// `pipeline`: the event's object through the named pipeline.
    async fn hand_to_pipeline(&self, name: &str, event: &Value) -> Result<Outcome, Failure> {
        let rule = "pipeline";
        let pipeline = self
            .connections
            .pipelines
            .get(name)
            .ok_or_else(|| fail(rule, "-", ErrorClass::Config, format!("pipeline {name} is not open in this server")))?;
        let key = crate::events::stripe_object(event)
            .or_else(|| object_id(event))
            .ok_or_else(|| fail(rule, "-", ErrorClass::Data, "the event names no object (data.object.id or objectId)"))?;
        match pipeline.sync(&key).await.map_err(|e| connector(rule, e))? {
            syncline_core::Outcome::Created => Ok(Outcome::Created),
            syncline_core::Outcome::Updated => Ok(Outcome::Updated),
            syncline_core::Outcome::Unchanged => Ok(Outcome::Unchanged),
            syncline_core::Outcome::Rejected(why) | syncline_core::Outcome::Failed(why) => Err(why),
        }
    }

    /// `manychat.find_or_create_subscriber`: by phone, then email; created when allowed.
    async fn find_or_create(&self, fields: &SubscriberFields, state: &State) -> Result<Subscriber, Failure> {
        let rule = "manychat.find_or_create_subscriber";
        let manychat = self.manychat();
        let value = |f: &Option<String>| f.as_ref().and_then(|f| text(&state.contact, f));
        let phone = value(&fields.whatsapp_phone).or_else(|| value(&fields.phone));
        let email = value(&fields.email);
        let find = async || -> Result<Option<Subscriber>, ConnectorError> {
            if let Some(phone) = &phone
                && let Some(found) = manychat.find(Lookup::Phone(phone)).await?
            {
                return Ok(Some(found));
            }
            match &email {
                Some(email) => manychat.find(Lookup::Email(email)).await,
                None => Ok(None),
            }
        };
        if let Some(found) = find().await.map_err(|e| connector(rule, e))? {
            return Ok(found);
        }
        if !fields.create {
            return Err(fail(rule, "-", ErrorClass::Data, "no ManyChat subscriber has this phone or email, and create is false"));
        }
        let new = NewSubscriber {
            first_name: value(&fields.first_name),
            last_name: value(&fields.last_name),
            whatsapp_phone: value(&fields.whatsapp_phone),
            phone: value(&fields.phone),
            has_opt_in_email: email.is_some(),
            has_opt_in_sms: fields.consent_phrase.is_some() && value(&fields.phone).is_some(),
            consent_phrase: fields.consent_phrase.clone(),
            email: email.clone(),
        };
        match manychat.create_subscriber(&new).await {
            Ok(created) => Ok(created),
            // created meanwhile (another event about the same person): use that one
            Err(e) if e.class == ErrorClass::Data => find().await.ok().flatten().ok_or_else(|| connector(rule, e)),
            Err(e) => Err(connector(rule, e)),
        }
    }

    /// `manychat.send_content`, unless the subscriber already has the flow's mark. The mark
    /// travels in the message itself: ManyChat tags the subscriber if and only if it accepted
    /// the message.
    async fn send_content(
        &self,
        flow: &Flow,
        i: usize,
        messages: &[String],
        message_tag: Option<&str>,
        state: &mut State,
    ) -> Result<Outcome, Failure> {
        let rule = "manychat.send_content";
        let mark = flow.mark();
        if subscriber(state).has_tag(&mark) {
            return Ok(Outcome::AlreadySent);
        }
        let mut texts = Vec::with_capacity(messages.len());
        for m in 0..messages.len() {
            let name = format!("messages[{m}]");
            let text = self.render(flow, i, &name, state)?;
            if text.trim().is_empty() {
                return Err(fail(rule, &name, ErrorClass::Data, "the message renders empty"));
            }
            texts.push(text);
        }
        let message =
            TextMessage { texts, mark, fields: std::mem::take(&mut state.fields_in_message), message_tag: message_tag.map(str::to_owned) };
        self.manychat().send_text(&subscriber(state).id, &message).await.map_err(|e| connector(rule, e))?;
        Ok(Outcome::Sent)
    }

    /// `manychat.send_flow`, unless the subscriber already has the flow's mark. sendFlow takes
    /// no actions: the mark follows in a second call, so a crash between the two can start the
    /// flow twice (at-least-once, unlike send_content).
    async fn send_flow(&self, flow: &Flow, flow_ns: &str, state: &State) -> Result<Outcome, Failure> {
        let rule = "manychat.send_flow";
        let mark = flow.mark();
        if subscriber(state).has_tag(&mark) {
            return Ok(Outcome::AlreadySent);
        }
        let id = &subscriber(state).id;
        self.manychat().send_flow(id, flow_ns).await.map_err(|e| connector(rule, e))?;
        self.manychat().add_tag(id, &mark).await.map_err(|e| connector(rule, e))?;
        Ok(Outcome::Sent)
    }

    /// The event's object's properties: from the event when it carries them all (backfilled
    /// events do), else from HubSpot (cached).
    async fn fetch(&self, object: &str, properties: &[String], event: &Value) -> Result<Map<String, Value>, ConnectorError> {
        if let Some(carried) = event.get("properties").and_then(Value::as_object)
            && properties.iter().all(|p| carried.contains_key(p))
        {
            return Ok(present(carried.iter().map(|(k, v)| (k.clone(), v.clone()))));
        }
        let Some(id) = object_id(event) else { return Err(ConnectorError::new(ErrorClass::Data, "the event has no objectId to fetch")) };
        let hubspot = self.connections.hubspot.as_ref().expect("checked at load");
        let fetch = async { Ok::<_, ConnectorError>(present_properties(hubspot.get_object(object, &id, properties).await?.properties)) };
        let found = self.objects.get_or_fetch(&format!("{object}/{id}"), fetch).await;
        let contact = found.map_err(|e| ConnectorError::new(e.class.clone(), e.message.clone()))?;
        Ok((*contact).clone())
    }

    /// Renders a `set_custom_fields` step's values, in order.
    fn render_fields(
        &self,
        flow: &Flow,
        i: usize,
        fields: &IndexMap<String, String>,
        state: &State,
    ) -> Result<Vec<(String, Value)>, Failure> {
        fields.keys().map(|name| Ok((name.clone(), Value::String(self.render(flow, i, name, state)?)))).collect()
    }

    /// Renders template `name` of step `i`, compiled at load.
    fn render(&self, flow: &Flow, i: usize, name: &str, state: &State) -> Result<String, Failure> {
        let rule = flow.steps[i].name();
        let template = self.templates.get_template(&template_name(&flow.name, Some(i), name)).map_err(|e| config(rule, &e))?;
        let subscriber = state.subscriber.as_ref().map(|s| serde_json::to_value(s).expect("a subscriber serializes"));
        let context = minijinja::context! { event => &state.event, contact => &state.contact, subscriber => subscriber };
        template.render(context).map_err(|e| data(rule, name, &e))
    }

    fn manychat(&self) -> &ManyChatApi {
        self.connections.manychat.as_ref().expect("checked at load")
    }
}

/// `require_any`: at least one of the fields is present and not blank.
fn require_any(state: &State, fields: &[String]) -> Result<(), Failure> {
    if fields.iter().any(|f| text(&state.contact, f).is_some()) {
        return Ok(());
    }
    let message = format!("the contact has none of {}: nobody to write to", fields.join(", "));
    Err(fail("require_any", &fields.join("|"), ErrorClass::Data, message))
}

/// `phone`: Costa Rica numbers in E.164; a number that is not one is dropped (logged).
fn normalize_phones(state: &mut State, fields: &[String]) {
    for field in fields {
        let Some(raw) = text(&state.contact, field) else { continue };
        match syncline_core::transform::normalize_phone(&raw) {
            Ok(phone) => {
                state.contact.insert(field.clone(), Value::String(phone.into()));
            }
            Err(why) => {
                tracing::info!(%field, %why, "dropped a phone that is not a Costa Rica number");
                state.contact.remove(field);
            }
        }
    }
}

/// `name`: names cleaned for a greeting.
fn clean_names(state: &mut State, fields: &[String]) {
    for field in fields {
        if let Some(raw) = text(&state.contact, field) {
            state.contact.insert(field.clone(), Value::String(sanitize_name(&raw)));
        }
    }
}

/// A hubspot.get step needs a HubSpot connection, a ManyChat step a ManyChat one.
fn check_connections(flow: &Flow, connections: &Connections) -> Result<(), FlowError> {
    let fail = |s, message: String| FlowError { flow: flow.name.clone(), step: Some(s), message };
    for (s, step) in flow.steps.iter().enumerate() {
        if matches!(step, Step::HubSpotGet { .. }) && connections.hubspot.is_none() {
            return Err(fail(s, "hubspot.get needs a HubSpot connection (connections.hubspot)".into()));
        }
        if step.is_manychat() && connections.manychat.is_none() {
            return Err(fail(s, format!("{} needs a ManyChat connection (connections.manychat)", step.name())));
        }
    }
    Ok(())
}

/// Adds the flow's templates and its filter (as a template that renders `1` when it holds) to
/// the engine's environment, compiled once.
fn compile(env: &mut Environment<'static>, flow: &Flow) -> Result<(), FlowError> {
    if let Some(filter) = &flow.filter {
        let fail = |message: String| FlowError { flow: flow.name.clone(), step: None, message };
        env.compile_expression(filter).map_err(|e| fail(format!("filter: {}", describe(&e))))?;
        let source = format!("{{% if {filter} %}}1{{% endif %}}");
        env.add_template_owned(template_name(&flow.name, None, ""), source).map_err(|e| fail(format!("filter: {}", describe(&e))))?;
    }
    for (i, step) in flow.steps.iter().enumerate() {
        for (name, source) in step.templates() {
            let fail = |e: minijinja::Error| FlowError {
                flow: flow.name.clone(),
                step: Some(i),
                message: format!("template {name}: {}", describe(&e)),
            };
            env.add_template_owned(template_name(&flow.name, Some(i), &name), source.to_owned()).map_err(fail)?;
        }
    }
    Ok(())
}

fn object_id(event: &Value) -> Option<String> {
    match &event["objectId"] {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// HubSpot's properties (unset ones null) without nulls and blanks.
fn present_properties(properties: BTreeMap<String, Option<String>>) -> Map<String, Value> {
    present(properties.into_iter().map(|(k, v)| (k, v.map(Value::String).unwrap_or(Value::Null))))
}

fn subscriber(state: &State) -> &Subscriber {
    state.subscriber.as_ref().expect("checked at load: a subscriber step comes first")
}

/// Properties without nulls and blanks: a missing value renders empty instead of `none`.
fn present(properties: impl Iterator<Item = (String, Value)>) -> Map<String, Value> {
    properties.filter(|(_, v)| !v.is_null() && v.as_str().is_none_or(|s| !s.trim().is_empty())).collect()
}

fn text(contact: &Map<String, Value>, field: &str) -> Option<String> {
    match contact.get(field)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Letters, spaces and `'-.`, whitespace collapsed, at most 50 characters.
fn sanitize_name(raw: &str) -> String {
    let kept: String = raw.chars().map(|c| if c.is_alphabetic() || matches!(c, '\'' | '-' | '.') { c } else { ' ' }).collect();
    let collapsed = kept.split_whitespace().collect::<Vec<_>>().join(" ");
    collapsed.chars().take(50).collect::<String>().trim_end().to_owned()
}

fn fail(rule: &str, field: &str, class: ErrorClass, message: impl Into<String>) -> Failure {
    RecordError { class, field: field.to_owned(), rule: rule.to_owned(), message: message.into() }
}

fn connector(rule: &str, error: ConnectorError) -> Failure {
    fail(rule, "-", error.class, error.message)
}

/// A template the engine should hold and does not: a bug of the load, not the event's.
fn config(rule: &str, error: &minijinja::Error) -> Failure {
    fail(rule, "-", ErrorClass::Config, describe(error))
}

/// A template that fails on this event's values.
fn data(rule: &str, field: &str, error: &minijinja::Error) -> Failure {
    fail(rule, field, ErrorClass::Data, describe(error))
}

fn overlaps(a: &[String], b: &[String]) -> bool {
    a.is_empty() || b.is_empty() || a.iter().any(|e| b.contains(e))
}

/// A minijinja error with its line, when it has one.
fn describe(error: &minijinja::Error) -> String {
    let detail = error.detail().map(|d| format!(": {d}")).unwrap_or_default();
    let line = error.line().map(|l| format!(" (template line {l})")).unwrap_or_default();
    format!("{}{detail}{line}", error.kind())
}

/// Templates must compile and may read only `event`, `subscriber` and the fetched `contact`
/// properties.
fn check_templates(env: &Environment<'static>, flow: &Flow) -> Result<(), FlowError> {
    let fetched = flow.hubspot_get().map(|(_, properties)| properties);
    for (i, step) in flow.steps.iter().enumerate() {
        let fail = |message: String| FlowError { flow: flow.name.clone(), step: Some(i), message };
        for (name, source) in step.templates() {
            let template = env.template_from_str(source).map_err(|e| fail(format!("template {name}: {}", describe(&e))))?;
            let used: BTreeMap<String, ()> = template.undeclared_variables(true).into_iter().map(|v| (v, ())).collect();
            for variable in used.keys() {
                let (top, rest) = variable.split_once('.').unwrap_or((variable, ""));
                match top {
                    "event" | "subscriber" => {}
                    "contact" => {
                        if let Some(fetched) = &fetched
                            && !rest.is_empty()
                            && !fetched.iter().any(|p| p.as_str() == rest)
                        {
                            return Err(fail(format!("template {name} uses contact.{rest}, which hubspot.get does not fetch")));
                        }
                    }
                    other => return Err(fail(format!("template {name} uses {other:?}; templates see event, contact and subscriber"))),
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_are_cleaned() {
        assert_eq!(sanitize_name("  maría   josé\t"), "maría josé");
        assert_eq!(sanitize_name("O'Neil-Smith Jr."), "O'Neil-Smith Jr.");
        assert_eq!(sanitize_name("Ana<script>1"), "Ana script");
        assert_eq!(sanitize_name(&"a".repeat(80)).len(), 50);
    }

    fn flow(steps: serde_json::Value) -> Flow {
        Flow {
            name: "welcome".into(),
            source: "hubspot".into(),
            events: vec!["contact.creation".into()],
            filter: None,
            steps: serde_json::from_value(steps).unwrap(),
            max_attempts: 3,
            ordered: false,
        }
    }

    fn load(steps: serde_json::Value) -> Result<Engine, FlowError> {
        Engine::new(vec![flow(steps)], Connections::default())
    }

    #[test]
    fn steps_are_checked_at_load() {
        let error = |steps| load(steps).err().map(|e| (e.step, e.message)).unwrap();
        let (step, message) = error(json!([{"hubspot.get": {"properties": ["email"]}}, {"require_any": ["phone"]}]));
        assert_eq!(step, Some(1));
        assert!(message.contains("\"phone\"") && message.contains("does not fetch"), "{message}");
        let (step, message) = error(json!([{"manychat.add_tag": "lead"}]));
        assert!(step == Some(0) && message.contains("find_or_create_subscriber"), "{message}");
        let (_, message) = error(json!([
            {"manychat.find_or_create_subscriber": {"email": "email"}},
            {"manychat.send_content": {"messages": ["hi {{ contact.firstname }"]}}
        ]));
        assert!(message.contains("messages[0]") && message.contains("syntax error") && message.contains("line 1"), "{message}");
        let (_, message) = error(json!([
            {"hubspot.get": {"properties": ["email", "firstname"]}},
            {"manychat.find_or_create_subscriber": {"email": "email"}},
            {"manychat.send_content": {"messages": ["Hola {{ contact.firstnme }}"]}}
        ]));
        assert!(message.contains("contact.firstnme"), "{message}");
        let eleven: Vec<&str> = vec!["x"; 11];
        let (_, message) =
            error(json!([{"manychat.find_or_create_subscriber": {"email": "email"}}, {"manychat.send_content": {"messages": eleven}}]));
        assert!(message.contains("1 to 10"), "{message}");
        // a well-formed flow still needs its connections
        let (_, message) = error(json!([{"hubspot.get": {"properties": ["email"]}}]));
        assert!(message.contains("connections.hubspot"), "{message}");
    }
}
