//! The CloudWatch dashboard of a stack.
//!
//! Every widget is scoped to this stack (the seed's widgets had no dimensions
//! and showed account-wide numbers): Lambda metrics with the `FunctionName`
//! dimension, the processor's Embedded Metric Format metrics (namespace
//! `ImageOptimization`) with the stack's `Stack` and `Environment`, DynamoDB errors and
//! throttles of the metadata table, and CloudFront traffic and error rates of
//! the distribution (`DistributionId` + `Region=Global`, always in us-east-1).
//!
//! Dimension sets match what the processor emits (processor/src/lambda/metrics.rs)
//! with the stack identity the operator gives it (`IMAGESTACK_STACK`, the
//! dashboard input's `stack`): `[Stack, Environment]` for
//! ProcessingTime/ProcessedImages/BytesIn and ProcessingErrors in total,
//! `[Stack, Environment, Reason]` for ProcessingErrors by reason (shown with
//! a `SEARCH` so every reason appears without listing them here), and
//! `[Stack, Environment, Format]` for BytesOut. Two stacks of one environment
//! in one account therefore never show each other's traffic.
//!
//! DynamoDB: `SystemErrors` and `ThrottledRequests` are published per
//! `{TableName, Operation}` only, so they are summed over a `SEARCH` filtered on
//! the table; `Read/WriteThrottleEvents` exist per `TableName`; `UserErrors`
//! has no dimensions at all (account- and region-wide) and is labelled so.
//!
//! The distribution id comes from the distribution's outputs in the same pass
//! (the plan orders the distribution first when the CDN is enabled); without
//! a distribution the CloudFront row is left out.
//!
//! Dashboards cannot be tagged: the name is deterministic ([`dashboard_name`],
//! which hashes the stack's identity) and the body carries the ownership — the
//! header's last line is an ownership marker ([`ownership_marker`]:
//! `managed by imagestack: imagestack.dev/stack=<namespace>/<name>
//! imagestack.dev/cluster=<cluster id>`), judged by [`body_ownership`]. A body
//! written before the marker existed, whose header names this stack, is
//! adopted and rewritten with the marker; any other same-named dashboard is a
//! `NameConflict`, never overwritten nor deleted. The body is compared
//! semantically (parsed JSON, numbers as numbers): the emulator returns it
//! byte for byte, AWS may reformat it.

use imagestack_contract::Format;
use imagestack_contract::metrics as m;
use serde_json::{Value, json};

use super::{Change, Component, ComponentName, Created, Ctx, Deletion, Resolved, Updated, code_of};
use crate::aws::partition;
use crate::error::{Error, Result};
use crate::naming::{CLUSTER_TAG, NAME_PREFIX, OWNER_TAG, Ownership, StackId, ownership_of};

/// The kind of resource, as errors and events name it.
const KIND: &str = "CloudWatch dashboard";
/// CloudWatch's limit on dashboard names.
pub const MAX_NAME_LEN: usize = 255;
/// Period of every widget, seconds.
pub const PERIOD: u32 = 300;
/// CloudFront publishes its metrics in us-east-1 only.
pub const CLOUDFRONT_METRICS_REGION: &str = "us-east-1";
/// Start of the header line that carries the ownership.
pub const MARKER_PREFIX: &str = "managed by imagestack:";
/// Height of the header text widget (title line and ownership marker).
const HEADER_HEIGHT: u32 = 2;
/// Error codes meaning "no such dashboard".
const NOT_FOUND: &[&str] = &[
    "ResourceNotFound",
    "ResourceNotFoundException",
    "DashboardNotFoundError",
];

/// Everything the dashboard body depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardInput {
    /// Region of the function, table and processor metrics.
    pub region: String,
    /// `<namespace>/<name>` of the stack (shown in the header): also the
    /// processor's `Stack` metric dimension.
    pub stack: String,
    /// The processor function's name.
    pub function_name: String,
    /// `spec.environment`: the processor's `Environment` metric dimension.
    pub environment: String,
    /// The metadata table's name.
    pub table_name: String,
    /// The distribution whose metrics are shown. Left `None` by the plan:
    /// the component takes it from the distribution's outputs of the pass
    /// ([`Resolved::distribution`]); `None` there too → no CloudFront row.
    pub distribution_id: Option<String>,
    /// Formats whose `BytesOut` is shown.
    pub formats: Vec<Format>,
}

/// What the dashboard should look like.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredDashboard {
    /// Deterministic name ([`dashboard_name`]).
    pub name: String,
    /// What the body is built from.
    pub input: DashboardInput,
    /// The ownership line of the header ([`ownership_marker`]).
    pub marker: String,
}

impl DesiredDashboard {
    /// The body for this pass: the distribution id from `inputs` when the
    /// distribution is known (else the one of [`DashboardInput`], if any).
    pub fn body(&self, inputs: &Resolved) -> Value {
        match &inputs.distribution {
            Some(d) if self.input.distribution_id.as_deref() != Some(d.id.as_str()) => {
                let mut input = self.input.clone();
                input.distribution_id = Some(d.id.clone());
                body(&input, &self.marker)
            }
            _ => body(&self.input, &self.marker),
        }
    }
}

/// The desired dashboard of a stack.
pub fn desired(id: &StackId, input: &DashboardInput) -> DesiredDashboard {
    DesiredDashboard {
        name: dashboard_name(id),
        input: input.clone(),
        marker: ownership_marker(id),
    }
}

/// The ownership line of the body:
/// `managed by imagestack: imagestack.dev/stack=<namespace>/<name> imagestack.dev/cluster=<id>`
/// (without the cluster part when the installation has no id).
pub fn ownership_marker(id: &StackId) -> String {
    let mut line = format!("{MARKER_PREFIX} {OWNER_TAG}={}", id.owner_tag_value());
    if !id.cluster.is_empty() {
        line.push_str(&format!(" {CLUSTER_TAG}={}", id.cluster));
    }
    line
}

/// The markdown of every text widget of a body.
fn markdowns(body: &Value) -> impl Iterator<Item = &str> {
    body.get("widgets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|w| w.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|w| w.pointer("/properties/markdown").and_then(Value::as_str))
}

/// The owner (`<namespace>/<name>`) and cluster id of the first ownership
/// marker in a body's text widgets; `None` without a (well-formed) marker.
pub fn parse_marker(body: &Value) -> Option<(String, Option<String>)> {
    let stack_key = format!("{OWNER_TAG}=");
    let cluster_key = format!(" {CLUSTER_TAG}=");
    markdowns(body)
        .flat_map(str::lines)
        .filter_map(|line| line.trim().strip_prefix(MARKER_PREFIX))
        .find_map(|rest| {
            let rest = rest.trim().strip_prefix(stack_key.as_str())?;
            // `<namespace>/<name>` contains no space; the cluster id runs to the end.
            let (owner, cluster) = match rest.split_once(cluster_key.as_str()) {
                Some((owner, cluster)) => (owner, Some(cluster.trim().to_string())),
                None => (rest.trim(), None),
            };
            (!owner.is_empty() && !owner.contains(char::is_whitespace))
                .then(|| (owner.to_string(), cluster))
        })
}

/// The title line of the header (also what bodies without a marker, written
/// by earlier versions, start with).
fn header_title(stack: &str, environment: &str) -> String {
    format!("## imagestack {stack} ({environment})")
}

/// Who owns a dashboard with this body, from the point of view of stack `id`:
/// the ownership marker decides (`Ours`, `OtherCluster`, `OtherStack`);
/// without one, a header naming this stack (a body written before the marker
/// existed) is `Ours`; anything else is `Foreign`.
pub fn body_ownership(id: &StackId, body: &Value) -> Ownership {
    if let Some((owner, cluster)) = parse_marker(body) {
        return ownership_of(id, Some(&owner), cluster.as_deref());
    }
    let legacy = format!(
        "{} · ",
        header_title(&id.owner_tag_value(), &id.environment)
    );
    if markdowns(body)
        .next()
        .is_some_and(|md| md.starts_with(&legacy))
    {
        Ownership::Ours
    } else {
        Ownership::Foreign
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Deterministic dashboard name: `imagestack-<namespace>-<name>-<env>-<hash8>`
/// with every character outside `[A-Za-z0-9_-]` replaced by `-`, the readable
/// part cut so that the whole stays within 255 characters. The hash keeps
/// names distinct when sanitising or cutting would make them collide.
pub fn dashboard_name(id: &StackId) -> String {
    let readable = sanitize(&format!(
        "{NAME_PREFIX}-{}-{}-{}",
        id.namespace, id.name, id.environment
    ));
    let hash = id.hash("dashboard", 8);
    let keep = MAX_NAME_LEN - hash.len() - 1;
    let readable: String = readable.chars().take(keep).collect();
    format!("{readable}-{hash}")
}

/// CloudWatch console URL of a dashboard.
pub fn console_url(region: &str, name: &str) -> String {
    let host = match partition(region) {
        "aws-cn" => format!("{region}.console.amazonaws.cn"),
        "aws-us-gov" => "console.amazonaws-us-gov.com".to_string(),
        _ => format!("{region}.console.aws.amazon.com"),
    };
    format!("https://{host}/cloudwatch/home?region={region}#dashboards/dashboard/{name}")
}

/// Quote a value for a CloudWatch `SEARCH` term (`"` and `\` escaped).
fn search_value(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

fn widget(x: u32, y: u32, w: u32, h: u32, properties: Value) -> Value {
    json!({"type": "metric", "x": x, "y": y, "width": w, "height": h, "properties": properties})
}

fn graph(title: &str, region: &str, metrics: Vec<Value>) -> Value {
    json!({
        "title": title,
        "region": region,
        "view": "timeSeries",
        "stacked": false,
        "period": PERIOD,
        "metrics": metrics,
    })
}

/// The dashboard body (CloudWatch dashboard body JSON), a pure function of
/// the input and the ownership marker (the header's last line).
pub fn body(input: &DashboardInput, marker: &str) -> Value {
    let region = input.region.as_str();
    let f = input.function_name.as_str();
    let env = input.environment.as_str();
    let t = input.table_name.as_str();
    let mut widgets = vec![json!({
        "type": "text", "x": 0, "y": 0, "width": 24, "height": HEADER_HEIGHT,
        "properties": {"markdown": format!(
            "{} · function `{f}` · table `{t}`{}\n\n{marker}",
            header_title(&input.stack, env),
            input.distribution_id.as_deref().map(|d| format!(" · distribution `{d}`")).unwrap_or_default()
        )}
    })];

    // Lambda, this function only.
    widgets.push(widget(
        0,
        2,
        12,
        6,
        graph(
            "Lambda invocations, errors, throttles",
            region,
            vec![
                json!(["AWS/Lambda", "Invocations", "FunctionName", f, {"stat": "Sum"}]),
                json!(["AWS/Lambda", "Errors", "FunctionName", f, {"stat": "Sum"}]),
                json!(["AWS/Lambda", "Throttles", "FunctionName", f, {"stat": "Sum"}]),
            ],
        ),
    ));
    widgets.push(widget(12, 2, 12, 6, graph("Lambda duration (ms)", region, vec![
        json!(["AWS/Lambda", "Duration", "FunctionName", f, {"stat": "p50", "label": "p50"}]),
        json!(["AWS/Lambda", "Duration", "FunctionName", f, {"stat": "p99", "label": "p99"}]),
    ])));

    // Processor (EMF), this stack only.
    let ns = m::NAMESPACE;
    let dim = m::DIMENSION_ENVIRONMENT;
    let sdim = m::DIMENSION_STACK;
    let stack = input.stack.as_str();
    widgets.push(widget(
        0,
        8,
        8,
        6,
        graph(
            "Images processed and failed",
            region,
            vec![
                json!([ns, m::PROCESSED_IMAGES, sdim, stack, dim, env, {"stat": "Sum"}]),
                json!([ns, m::PROCESSING_ERRORS, sdim, stack, dim, env, {"stat": "Sum"}]),
            ],
        ),
    ));
    widgets.push(widget(
        8,
        8,
        8,
        6,
        graph(
            "Processing time (ms)",
            region,
            vec![
                json!([ns, m::PROCESSING_TIME, sdim, stack, dim, env, {"stat": "p50", "label": "p50"}]),
                json!([ns, m::PROCESSING_TIME, sdim, stack, dim, env, {"stat": "p99", "label": "p99"}]),
            ],
        ),
    ));
    let by_reason = format!(
        "SEARCH('{{{ns},{dim},{reason},{sdim}}} MetricName=\"{metric}\" {dim}={value} {sdim}={stack_value}', 'Sum', {PERIOD})",
        reason = m::DIMENSION_REASON,
        metric = m::PROCESSING_ERRORS,
        value = search_value(env),
        stack_value = search_value(stack),
    );
    widgets.push(widget(
        16,
        8,
        8,
        6,
        graph(
            "Processing errors by reason",
            region,
            vec![json!([{"expression": by_reason, "id": "reasons"}])],
        ),
    ));
    let mut bytes = vec![json!([ns, m::BYTES_IN, sdim, stack, dim, env, {"stat": "Sum"}])];
    for format in &input.formats {
        bytes.push(json!([
            ns, m::BYTES_OUT, sdim, stack, dim, env, m::DIMENSION_FORMAT, format.as_str(),
            {"stat": "Sum", "label": format!("{} {}", m::BYTES_OUT, format.as_str())}
        ]));
    }
    widgets.push(widget(
        0,
        14,
        12,
        6,
        graph("Bytes in and out per format", region, bytes),
    ));

    // DynamoDB, this table (UserErrors exists only account-wide).
    let per_operation = |metric: &str| {
        format!(
            "SUM(SEARCH('{{AWS/DynamoDB,Operation,TableName}} MetricName=\"{metric}\" TableName={}', 'Sum', {PERIOD}))",
            search_value(t)
        )
    };
    widgets.push(widget(12, 14, 12, 6, graph("DynamoDB errors and throttles", region, vec![
        json!([{"expression": per_operation("SystemErrors"), "id": "systemerrors", "label": "SystemErrors"}]),
        json!([{"expression": per_operation("ThrottledRequests"), "id": "throttledrequests", "label": "ThrottledRequests"}]),
        json!(["AWS/DynamoDB", "ReadThrottleEvents", "TableName", t, {"stat": "Sum"}]),
        json!(["AWS/DynamoDB", "WriteThrottleEvents", "TableName", t, {"stat": "Sum"}]),
        json!(["AWS/DynamoDB", "UserErrors", {"stat": "Sum", "label": "UserErrors (whole account and region)"}]),
    ])));

    // CloudFront, this distribution (global metrics live in us-east-1).
    if let Some(d) = input.distribution_id.as_deref() {
        let cf = CLOUDFRONT_METRICS_REGION;
        let metric = |name: &str, stat: &str| json!(["AWS/CloudFront", name, "DistributionId", d, "Region", "Global", {"stat": stat}]);
        widgets.push(widget(
            0,
            20,
            8,
            6,
            graph("CloudFront requests", cf, vec![metric("Requests", "Sum")]),
        ));
        widgets.push(widget(
            8,
            20,
            8,
            6,
            graph(
                "CloudFront bytes downloaded",
                cf,
                vec![metric("BytesDownloaded", "Sum")],
            ),
        ));
        widgets.push(widget(
            16,
            20,
            8,
            6,
            graph(
                "CloudFront error rates (%)",
                cf,
                vec![
                    metric("4xxErrorRate", "Average"),
                    metric("5xxErrorRate", "Average"),
                ],
            ),
        ));
    }
    json!({ "widgets": widgets })
}

/// Numbers compared by value (`300` = `300.0`), everything else structurally.
fn normalized(v: &Value) -> Value {
    match v {
        Value::Number(n) => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or_else(|| v.clone()),
        Value::Array(a) => Value::Array(a.iter().map(normalized).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), normalized(v))).collect())
        }
        other => other.clone(),
    }
}

/// `None` when the bodies mean the same; otherwise what differs (by widget count).
pub fn diff(desired: &Value, observed: &Value) -> Option<Change> {
    let want = normalized(desired);
    let have = normalized(observed);
    if want == have {
        return None;
    }
    let widgets = |v: &Value| v.get("widgets").and_then(Value::as_array).cloned();
    let from = match (widgets(&want), widgets(&have)) {
        (Some(w), Some(h)) => {
            let differing = (0..w.len().max(h.len()))
                .filter(|i| w.get(*i) != h.get(*i))
                .count();
            format!("{differing} of {} widget(s) differ", h.len())
        }
        _ => "not a dashboard body of ours".to_string(),
    };
    Some(Change::new("dashboardBody", from, "as spec"))
}

/// The dashboard's body; `None` when it does not exist. A body that is not
/// JSON is returned as a JSON string (it then differs from any desired body,
/// and carries no ownership).
pub async fn observe(cx: &Ctx<'_>, name: &str) -> Result<Option<Value>> {
    match cx
        .aws
        .cloudwatch
        .get_dashboard()
        .dashboard_name(name)
        .send()
        .await
    {
        Ok(out) => {
            let raw = out.dashboard_body().unwrap_or_default();
            Ok(Some(
                serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string())),
            ))
        }
        Err(e) if code_of(&e).is_some_and(|c| NOT_FOUND.contains(&c)) => Ok(None),
        Err(e) => Err(Error::aws("cloudwatch:GetDashboard", e)),
    }
}

async fn put(cx: &Ctx<'_>, name: &str, body: &Value) -> Result<()> {
    let out = cx
        .aws
        .cloudwatch
        .put_dashboard()
        .dashboard_name(name)
        .dashboard_body(body.to_string())
        .send()
        .await
        .map_err(|e| Error::aws("cloudwatch:PutDashboard", e))?;
    for msg in out.dashboard_validation_messages() {
        tracing::warn!(dashboard = %name, path = ?msg.data_path(), message = ?msg.message(),
            "CloudWatch accepted the dashboard with a validation message");
    }
    Ok(())
}

impl Component for DesiredDashboard {
    /// The body, parsed.
    type Observed = Value;

    fn name(&self) -> ComponentName {
        ComponentName::Dashboard
    }
    fn kind(&self) -> &'static str {
        KIND
    }
    /// The dashboard's name.
    fn id(&self) -> String {
        self.name.clone()
    }

    async fn observe(&self, cx: &Ctx<'_>) -> Result<Option<Value>> {
        observe(cx, &self.name).await
    }

    /// Dashboards cannot be tagged: the body's marker names the owner.
    fn ownership(&self, cx: &Ctx<'_>, seen: &Value) -> Ownership {
        body_ownership(cx.id, seen)
    }

    fn diff(&self, cx: &Ctx<'_>, seen: &Value) -> Result<Vec<Change>> {
        Ok(diff(&self.body(cx.inputs), seen).into_iter().collect())
    }

    async fn create(&self, cx: &Ctx<'_>) -> Result<Created> {
        put(cx, &self.name, &self.body(cx.inputs)).await?;
        Ok(Created::done())
    }

    /// The body is written whole.
    async fn update(&self, cx: &Ctx<'_>, _seen: &Value, changes: &[Change]) -> Result<Updated> {
        put(cx, &self.name, &self.body(cx.inputs)).await?;
        Ok(Updated::all(changes))
    }

    async fn delete(&self, cx: &Ctx<'_>, _seen: &Value) -> Result<Deletion> {
        match cx
            .aws
            .cloudwatch
            .delete_dashboards()
            .dashboard_names(&self.name)
            .send()
            .await
        {
            Ok(_) => Ok(Deletion::Gone),
            Err(e) if code_of(&e).is_some_and(|c| NOT_FOUND.contains(&c)) => Ok(Deletion::Absent),
            Err(e) => Err(Error::aws("cloudwatch:DeleteDashboards", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARKER: &str = "managed by imagestack: imagestack.dev/stack=team-a/images imagestack.dev/cluster=cluster-a";

    fn stack() -> StackId {
        StackId::new("team-a", "images", "dev").in_cluster("cluster-a")
    }

    fn input() -> DashboardInput {
        DashboardInput {
            region: "eu-west-1".into(),
            stack: "team-a/images".into(),
            function_name: "imagestack-dev-processor-abc".into(),
            environment: "dev".into(),
            table_name: "imagestack-dev-metadata-abc".into(),
            distribution_id: Some("E2QWRUHEXAMPLE".into()),
            formats: Format::DEFAULT.to_vec(),
        }
    }

    /// Every metric line (arrays whose first element is a namespace string).
    fn metric_lines(body: &Value) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        for w in body["widgets"].as_array().unwrap() {
            let region = w["properties"]["region"].as_str().unwrap_or("").to_string();
            if let Some(ms) = w["properties"]["metrics"].as_array() {
                for line in ms {
                    out.push((region.clone(), line.clone()));
                }
            }
        }
        out
    }

    fn find<'a>(lines: &'a [(String, Value)], ns: &str, metric: &str) -> Vec<&'a (String, Value)> {
        lines
            .iter()
            .filter(|(_, l)| l[0] == ns && l[1] == metric)
            .collect()
    }

    #[test]
    fn lambda_widgets_are_scoped_to_the_function() {
        let lines = metric_lines(&body(&input(), MARKER));
        for metric in ["Invocations", "Errors", "Throttles", "Duration"] {
            let hits = find(&lines, "AWS/Lambda", metric);
            assert!(!hits.is_empty(), "{metric}");
            for (region, l) in hits {
                assert_eq!(l[2], "FunctionName");
                assert_eq!(l[3], "imagestack-dev-processor-abc");
                assert_eq!(region, "eu-west-1");
            }
        }
        let stats: Vec<&Value> = find(&lines, "AWS/Lambda", "Duration")
            .iter()
            .map(|(_, l)| &l[4]["stat"])
            .collect();
        assert_eq!(stats, [&json!("p50"), &json!("p99")]);
    }

    #[test]
    fn processor_metrics_match_the_emitted_dimension_sets() {
        let lines = metric_lines(&body(&input(), MARKER));
        for metric in [
            "ProcessingTime",
            "ProcessedImages",
            "ProcessingErrors",
            "BytesIn",
        ] {
            let hits = find(&lines, "ImageOptimization", metric);
            assert!(!hits.is_empty(), "{metric}");
            for (_, l) in hits {
                assert_eq!(l[2], "Stack");
                assert_eq!(l[3], "team-a/images");
                assert_eq!(l[4], "Environment");
                assert_eq!(l[5], "dev");
                // [Stack, Environment] only: the 7th element is the options object.
                assert!(l[6].is_object(), "{l}");
            }
        }
        let out = find(&lines, "ImageOptimization", "BytesOut");
        let formats: Vec<&Value> = out.iter().map(|(_, l)| &l[7]).collect();
        assert_eq!(formats, [&json!("webp"), &json!("jpeg"), &json!("png")]);
        for (_, l) in out {
            assert_eq!(
                (&l[2], &l[4], &l[6]),
                (&json!("Stack"), &json!("Environment"), &json!("Format"))
            );
        }
        let text = body(&input(), MARKER).to_string();
        assert!(
            text.contains(r#"SEARCH('{ImageOptimization,Environment,Reason,Stack} MetricName=\"ProcessingErrors\" Environment=\"dev\" Stack=\"team-a/images\"', 'Sum', 300)"#),
            "{text}"
        );
    }

    #[test]
    fn dynamodb_and_cloudfront_are_scoped() {
        let b = body(&input(), MARKER);
        let lines = metric_lines(&b);
        for metric in ["ReadThrottleEvents", "WriteThrottleEvents"] {
            let (_, l) = find(&lines, "AWS/DynamoDB", metric)[0];
            assert_eq!(l[2], "TableName");
            assert_eq!(l[3], "imagestack-dev-metadata-abc");
        }
        let text = b.to_string();
        for metric in ["SystemErrors", "ThrottledRequests"] {
            assert!(
                text.contains(&format!(
                    r#"SUM(SEARCH('{{AWS/DynamoDB,Operation,TableName}} MetricName=\"{metric}\" TableName=\"imagestack-dev-metadata-abc\"', 'Sum', 300))"#
                )),
                "{metric}"
            );
        }
        for metric in [
            "Requests",
            "BytesDownloaded",
            "4xxErrorRate",
            "5xxErrorRate",
        ] {
            let hits = find(&lines, "AWS/CloudFront", metric);
            assert_eq!(hits.len(), 1, "{metric}");
            let (region, l) = hits[0];
            assert_eq!(region, "us-east-1");
            assert_eq!(
                &l.as_array().unwrap()[2..6],
                [
                    json!("DistributionId"),
                    json!("E2QWRUHEXAMPLE"),
                    json!("Region"),
                    json!("Global")
                ]
            );
        }
        let mut no_cdn = input();
        no_cdn.distribution_id = None;
        let lines = metric_lines(&body(&no_cdn, MARKER));
        assert!(find(&lines, "AWS/CloudFront", "Requests").is_empty());
    }

    #[test]
    fn widgets_fit_the_grid_without_overlap() {
        let b = body(&input(), MARKER);
        let ws = b["widgets"].as_array().unwrap();
        let mut cells = std::collections::HashSet::new();
        for w in ws {
            let (x, y, wd, ht) = (
                w["x"].as_u64().unwrap(),
                w["y"].as_u64().unwrap(),
                w["width"].as_u64().unwrap(),
                w["height"].as_u64().unwrap(),
            );
            assert!(x + wd <= 24, "{w}");
            for i in x..x + wd {
                for j in y..y + ht {
                    assert!(cells.insert((i, j)), "overlap at {i},{j}: {w}");
                }
            }
        }
    }

    #[test]
    fn body_is_deterministic_and_compared_semantically() {
        let a = body(&input(), MARKER);
        assert_eq!(a, body(&input(), MARKER));
        assert_eq!(diff(&a, &a), None);
        // Reformatted by AWS: other key order, whitespace, 300 → 300.0.
        let pretty = serde_json::to_string_pretty(&a)
            .unwrap()
            .replace(": 300", ": 300.0");
        let reparsed: Value = serde_json::from_str(&pretty).unwrap();
        assert_ne!(reparsed, a);
        assert_eq!(diff(&a, &reparsed), None);
        let mut changed = a.clone();
        changed["widgets"][1]["properties"]["metrics"][0][3] = json!("other-function");
        let c = diff(&a, &changed).unwrap();
        assert_eq!(c.field, "dashboardBody");
        assert!(c.from.starts_with("1 of "), "{c}");
        assert!(diff(&a, &json!("not json")).is_some());
    }

    #[test]
    fn names_and_urls() {
        let id = StackId::new("team-a", "images.v2", "dev");
        let n = dashboard_name(&id);
        assert!(n.starts_with("imagestack-team-a-images-v2-dev-"), "{n}");
        assert!(
            n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        );
        assert_ne!(
            n,
            dashboard_name(&StackId::new("team-a", "images-v2", "dev"))
        );
        let long = StackId::new("n".repeat(63), "x".repeat(253), "e".repeat(20));
        assert!(dashboard_name(&long).len() <= MAX_NAME_LEN);
        assert_eq!(
            console_url("eu-west-1", "d"),
            "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#dashboards/dashboard/d"
        );
        assert!(
            console_url("cn-north-1", "d").starts_with("https://cn-north-1.console.amazonaws.cn/")
        );
    }

    #[test]
    fn the_body_carries_its_owner() {
        let id = stack();
        assert_eq!(ownership_marker(&id), MARKER);
        let d = desired(&id, &input());
        let b = d.body(&Resolved::default());
        let header = b["widgets"][0]["properties"]["markdown"].as_str().unwrap();
        assert!(
            header.starts_with("## imagestack team-a/images (dev) · "),
            "{header}"
        );
        assert!(header.ends_with(MARKER), "{header}");
        assert_eq!(
            parse_marker(&b),
            Some(("team-a/images".into(), Some("cluster-a".into())))
        );
        // Without an installation id: no cluster part.
        let bare = StackId::new("team-a", "images", "dev");
        assert_eq!(
            parse_marker(&body(&input(), &ownership_marker(&bare))),
            Some(("team-a/images".into(), None))
        );
    }

    #[test]
    fn the_distribution_id_comes_from_the_pass() {
        let mut i = input();
        i.distribution_id = None;
        let d = desired(&stack(), &i);
        let without = d.body(&Resolved::default());
        assert!(!without.to_string().contains("AWS/CloudFront"));
        let inputs = Resolved {
            distribution: Some(crate::components::distribution::DistributionOutputs {
                id: "E2QWRUHEXAMPLE".into(),
                arn: "arn:aws:cloudfront::123456789012:distribution/E2QWRUHEXAMPLE".into(),
                domain: "d1.cloudfront.net".into(),
            }),
            ..Resolved::default()
        };
        assert_eq!(d.body(&inputs), body(&input(), MARKER));
    }

    /// A body as the version before ownership markers wrote it.
    fn legacy_body(stack: &str) -> Value {
        let mut b = body(&input(), MARKER);
        b["widgets"][0]["properties"]["markdown"] = json!(format!(
            "## imagestack {stack} (dev) · function `f` · table `t`"
        ));
        b
    }

    #[test]
    fn ownership_ours_legacy_other_cluster_other_stack_foreign() {
        let me = stack();
        let mine = desired(&me, &input()).body(&Resolved::default());
        assert_eq!(body_ownership(&me, &mine), Ownership::Ours);
        // Written before markers existed, header naming this stack: adopted,
        // and the diff rewrites it with the marker.
        let legacy = legacy_body("team-a/images");
        assert_eq!(body_ownership(&me, &legacy), Ownership::Ours);
        assert!(diff(&mine, &legacy).is_some());
        // Same namespace/name, another installation.
        let theirs =
            desired(&me.clone().in_cluster("cluster-b"), &input()).body(&Resolved::default());
        assert_eq!(
            body_ownership(&me, &theirs),
            Ownership::OtherCluster("cluster-b".into())
        );
        // Another stack (with or without a marker).
        let other = StackId::new("team-a", "images2", "dev").in_cluster("cluster-a");
        let other_body = desired(&other, &input()).body(&Resolved::default());
        assert_eq!(
            body_ownership(&me, &other_body),
            Ownership::OtherStack("team-a/images2".into())
        );
        assert_eq!(
            body_ownership(&me, &legacy_body("team-a/images2")),
            Ownership::Foreign
        );
        // The legacy header of another environment is not ours either.
        let mut prod = legacy_body("team-a/images");
        prod["widgets"][0]["properties"]["markdown"] =
            json!("## imagestack team-a/images (prod) · function `f`");
        assert_eq!(body_ownership(&me, &prod), Ownership::Foreign);
        // Hand made, not JSON, empty.
        let hand = json!({"widgets": [{"type": "text", "x": 0, "y": 0, "width": 6, "height": 2,
            "properties": {"markdown": "# my dashboard"}}]});
        assert_eq!(body_ownership(&me, &hand), Ownership::Foreign);
        assert_eq!(body_ownership(&me, &json!("not json")), Ownership::Foreign);
        assert_eq!(body_ownership(&me, &json!({})), Ownership::Foreign);
        // A malformed marker is no marker.
        let mut broken = mine.clone();
        broken["widgets"][0]["properties"]["markdown"] =
            json!("# x\nmanaged by imagestack: imagestack.dev/stack=");
        assert_eq!(body_ownership(&me, &broken), Ownership::Foreign);
    }
}
