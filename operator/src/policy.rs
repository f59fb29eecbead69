//! IAM and S3 policy documents, and their semantic comparison.
//!
//! AWS returns policies URL-encoded (IAM), re-serialized and reordered, with
//! single values where we sent lists and the other way round. Comparing the
//! text would rewrite an unchanged policy on every reconcile; [`normalize`]
//! puts both sides in one canonical form instead.

use serde_json::{Map, Value, json};

/// Policy language version used in every document.
pub const VERSION: &str = "2012-10-17";

/// Trust policy of the processor role: only Lambda, only on behalf of `account`.
pub fn lambda_trust_policy(account: &str) -> Value {
    json!({
        "Version": VERSION,
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Service": "lambda.amazonaws.com" },
            "Action": "sts:AssumeRole",
            "Condition": { "StringEquals": { "aws:SourceAccount": account } }
        }]
    })
}

/// Inputs of the processor's least-privilege inline policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessorPolicyInput<'a> {
    pub partition: &'a str,
    pub region: &'a str,
    pub account: &'a str,
    pub function_name: &'a str,
    pub upload_bucket: &'a str,
    /// `(bucket, key prefix with trailing slash)` per enabled output format.
    pub outputs: Vec<(&'a str, String)>,
    pub table_name: &'a str,
    /// ARN of the failed-event queue (Lambda's on-failure destination sends
    /// with the function's role).
    pub failed_event_queue: Option<&'a str>,
}

/// The processor's inline policy: logs on its own log group only, read the
/// upload bucket, write only under each output bucket's format prefix, and
/// item-level access to its table. No `*` resources, no ACL or delete rights.
pub fn processor_policy(i: &ProcessorPolicyInput<'_>) -> Value {
    let p = i.partition;
    let log_group = format!(
        "arn:{p}:logs:{}:{}:log-group:/aws/lambda/{}",
        i.region, i.account, i.function_name
    );
    let outputs: Vec<Value> = i
        .outputs
        .iter()
        .map(|(bucket, prefix)| Value::String(format!("arn:{p}:s3:::{bucket}/{prefix}*")))
        .collect();
    let table = format!(
        "arn:{p}:dynamodb:{}:{}:table/{}",
        i.region, i.account, i.table_name
    );
    let mut statements = vec![
        json!({
            "Sid": "OwnLogGroup",
            "Effect": "Allow",
            "Action": ["logs:CreateLogGroup"],
            "Resource": [format!("{log_group}:*")]
        }),
        json!({
            "Sid": "OwnLogStreams",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [format!("{log_group}:log-stream:*")]
        }),
        json!({
            "Sid": "ReadUploads",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:GetObjectVersion"],
            "Resource": [format!("arn:{p}:s3:::{}/*", i.upload_bucket)]
        }),
        json!({
            "Sid": "WriteRenditions",
            "Effect": "Allow",
            "Action": ["s3:PutObject"],
            "Resource": outputs
        }),
        json!({
            "Sid": "MetadataItems",
            "Effect": "Allow",
            "Action": ["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:GetItem"],
            "Resource": [table]
        }),
    ];
    if let Some(queue) = i.failed_event_queue {
        statements.push(json!({
            "Sid": "FailedEvents",
            "Effect": "Allow",
            "Action": ["sqs:SendMessage"],
            "Resource": [queue]
        }));
    }
    json!({"Version": VERSION, "Statement": statements})
}

/// The queue-policy statement that denies every request not made over TLS.
pub fn deny_insecure_transport_queue(queue_arn: &str) -> Value {
    json!({
        "Sid": TLS_ONLY_SID,
        "Effect": "Deny",
        "Principal": "*",
        "Action": "sqs:*",
        "Resource": queue_arn,
        "Condition": { "Bool": { "aws:SecureTransport": "false" } }
    })
}

/// Statement id of the TLS-only statement (managed by the bucket component).
pub const TLS_ONLY_SID: &str = "DenyInsecureTransport";
/// Statement id of the CloudFront read grant (managed by the CDN grant component).
pub const CLOUDFRONT_READ_SID: &str = "AllowCloudFrontRead";

/// The bucket-policy statement that denies every request not made over TLS.
pub fn deny_insecure_transport(partition: &str, bucket: &str) -> Value {
    json!({
        "Sid": TLS_ONLY_SID,
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [
            format!("arn:{partition}:s3:::{bucket}"),
            format!("arn:{partition}:s3:::{bucket}/*")
        ],
        "Condition": { "Bool": { "aws:SecureTransport": "false" } }
    })
}

/// The bucket-policy statement that lets one CloudFront distribution (through
/// origin access control) read the objects under `prefix` — nothing else.
pub fn cloudfront_read(
    partition: &str,
    bucket: &str,
    prefix: &str,
    distribution_arn: &str,
) -> Value {
    json!({
        "Sid": CLOUDFRONT_READ_SID,
        "Effect": "Allow",
        "Principal": { "Service": "cloudfront.amazonaws.com" },
        "Action": "s3:GetObject",
        "Resource": format!("arn:{partition}:s3:::{bucket}/{prefix}*"),
        "Condition": { "StringEquals": { "AWS:SourceArn": distribution_arn } }
    })
}

/// A bucket policy made of `statements`.
pub fn bucket_policy(statements: Vec<Value>) -> Value {
    json!({ "Version": VERSION, "Statement": statements })
}

/// Statements of a policy document (a single statement object counts as one).
pub fn statements(doc: &Value) -> Vec<Value> {
    match doc.get("Statement") {
        Some(Value::Array(a)) => a.clone(),
        Some(s @ Value::Object(_)) => vec![s.clone()],
        _ => vec![],
    }
}

/// The statement with id `sid`, if the document has one.
pub fn statement(doc: &Value, sid: &str) -> Option<Value> {
    statements(doc).into_iter().find(|s| s["Sid"] == sid)
}

/// True when two statements mean the same.
pub fn same_statement(a: &Value, b: &Value) -> bool {
    normalize_statement(a) == normalize_statement(b)
}

/// `doc` (or a new document) with `stmt` in place of the statement of the
/// same `Sid`, every other statement kept as it is (read-modify-write: the
/// stack owns its statement ids, never the whole document).
pub fn with_statement(doc: Option<&Value>, stmt: Value) -> Value {
    let sid = stmt["Sid"].clone();
    let mut out = match doc {
        Some(Value::Object(o)) => o.clone(),
        _ => Map::new(),
    };
    out.entry("Version")
        .or_insert_with(|| Value::String(VERSION.into()));
    let mut list: Vec<Value> = doc.map(statements).unwrap_or_default();
    match list.iter_mut().find(|s| s["Sid"] == sid) {
        Some(existing) => *existing = stmt,
        None => list.push(stmt),
    }
    out.insert("Statement".into(), Value::Array(list));
    Value::Object(out)
}

/// `doc` without the statement `sid`; `None` when no statement is left.
pub fn without_statement(doc: &Value, sid: &str) -> Option<Value> {
    let list: Vec<Value> = statements(doc)
        .into_iter()
        .filter(|s| s["Sid"] != sid)
        .collect();
    if list.is_empty() {
        return None;
    }
    let mut out = doc.as_object().cloned().unwrap_or_default();
    out.insert("Statement".into(), Value::Array(list));
    Some(Value::Object(out))
}

/// Parse a policy as AWS returns it: JSON, possibly URL-encoded (IAM).
pub fn parse(document: &str) -> Result<Value, serde_json::Error> {
    let trimmed = document.trim_start();
    if trimmed.starts_with('{') {
        serde_json::from_str(document)
    } else {
        let decoded = percent_encoding::percent_decode_str(document).decode_utf8_lossy();
        serde_json::from_str(&decoded)
    }
}

/// True when two policies mean the same.
pub fn equivalent(a: &Value, b: &Value) -> bool {
    normalize(a) == normalize(b)
}

/// Canonical form of a policy document: statements as a sorted list; every
/// action/resource/principal/condition value as a sorted, deduplicated list;
/// condition keys lowercased (they are case-insensitive); a missing `Version`
/// read as AWS does ("2008-10-17").
pub fn normalize(doc: &Value) -> Value {
    let Some(obj) = doc.as_object() else {
        return doc.clone();
    };
    let version = obj
        .get("Version")
        .cloned()
        .unwrap_or_else(|| Value::String("2008-10-17".into()));
    let mut statements: Vec<Value> = match obj.get("Statement") {
        Some(Value::Array(a)) => a.iter().map(normalize_statement).collect(),
        Some(s @ Value::Object(_)) => vec![normalize_statement(s)],
        _ => vec![],
    };
    statements.sort_by_key(|s| s.to_string());
    let mut out = Map::new();
    out.insert("Version".into(), version);
    if let Some(id) = obj.get("Id") {
        out.insert("Id".into(), id.clone());
    }
    out.insert("Statement".into(), Value::Array(statements));
    Value::Object(out)
}

fn normalize_statement(s: &Value) -> Value {
    let Some(obj) = s.as_object() else {
        return s.clone();
    };
    let mut out = Map::new();
    for (k, v) in obj {
        let nv = match k.as_str() {
            "Action" | "NotAction" | "Resource" | "NotResource" => string_set(v),
            "Principal" | "NotPrincipal" => normalize_principal(v),
            "Condition" => normalize_condition(v),
            _ => v.clone(),
        };
        out.insert(k.clone(), nv);
    }
    Value::Object(out)
}

fn string_set(v: &Value) -> Value {
    let mut items: Vec<String> = match v {
        Value::Array(a) => a.iter().map(scalar_string).collect(),
        other => vec![scalar_string(other)],
    };
    items.sort();
    items.dedup();
    Value::Array(items.into_iter().map(Value::String).collect())
}

fn scalar_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn normalize_principal(v: &Value) -> Value {
    match v {
        // "*" and {"AWS": "*"} are the same principal.
        Value::String(s) if s == "*" => json!({ "AWS": ["*"] }),
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), string_set(v))).collect())
        }
        other => other.clone(),
    }
}

fn normalize_condition(v: &Value) -> Value {
    let Some(ops) = v.as_object() else {
        return v.clone();
    };
    Value::Object(
        ops.iter()
            .map(|(op, keys)| {
                let keys = match keys.as_object() {
                    Some(m) => Value::Object(
                        m.iter()
                            .map(|(k, v)| (k.to_ascii_lowercase(), string_set(v)))
                            .collect(),
                    ),
                    None => keys.clone(),
                };
                (op.clone(), keys)
            })
            .collect(),
    )
}

/// Resources of every statement, for the least-privilege checks in tests.
pub fn resources(doc: &Value) -> Vec<String> {
    normalize(doc)["Statement"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| {
            s["Resource"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|r| r.as_str().map(str::to_string))
        })
        .collect()
}

/// Actions of every statement.
pub fn actions(doc: &Value) -> Vec<String> {
    normalize(doc)["Statement"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| {
            s["Action"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|r| r.as_str().map(str::to_string))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> ProcessorPolicyInput<'static> {
        ProcessorPolicyInput {
            partition: "aws",
            region: "eu-west-1",
            account: "123456789012",
            function_name: "fn",
            upload_bucket: "up",
            outputs: vec![
                ("w", "webp/".to_string()),
                ("j", "jpeg/".to_string()),
                ("p", "png/".to_string()),
            ],
            table_name: "t",
            failed_event_queue: None,
        }
    }

    #[test]
    fn the_role_may_send_to_exactly_the_failed_event_queue() {
        let queue = "arn:aws:sqs:eu-west-1:123456789012:imagestack-dev-failed-1";
        let doc = processor_policy(&ProcessorPolicyInput {
            failed_event_queue: Some(queue),
            ..input()
        });
        let st = statement(&doc, "FailedEvents").expect("statement");
        assert_eq!(st["Action"], json!(["sqs:SendMessage"]));
        assert_eq!(st["Resource"], json!([queue]));
        assert!(statement(&processor_policy(&input()), "FailedEvents").is_none());
        let tls = deny_insecure_transport_queue(queue);
        assert_eq!(tls["Action"], "sqs:*");
        assert_eq!(tls["Condition"]["Bool"]["aws:SecureTransport"], "false");
    }

    #[test]
    fn url_encoded_and_reordered_policy_is_equivalent() {
        let ours = processor_policy(&input());
        // What IAM hands back: reordered statements, single values unwrapped, URL-encoded.
        let mut theirs = ours.clone();
        let stmts = theirs["Statement"].as_array_mut().unwrap();
        stmts.reverse();
        stmts[0]["Action"] = json!([
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem"
        ]);
        stmts[4]["Action"] = json!("logs:CreateLogGroup");
        let text = theirs.to_string();
        let encoded =
            percent_encoding::utf8_percent_encode(&text, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        assert!(encoded.starts_with("%7B"));
        let parsed = parse(&encoded).unwrap();
        assert!(equivalent(&ours, &parsed));
    }

    #[test]
    fn changed_policy_is_not_equivalent() {
        let ours = processor_policy(&input());
        let mut edited = ours.clone();
        edited["Statement"][3]["Action"] = json!(["s3:PutObject", "s3:PutObjectAcl"]);
        assert!(!equivalent(&ours, &edited));
        let mut wider = ours.clone();
        wider["Statement"][2]["Resource"] = json!("*");
        assert!(!equivalent(&ours, &wider));
    }

    #[test]
    fn condition_keys_are_case_insensitive() {
        let a = json!({"Version": VERSION, "Statement": [{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*","Condition":{"StringEquals":{"AWS:SourceArn":"x"}}}]});
        let b = json!({"Version": VERSION, "Statement": {"Effect":"Allow","Principal":{"AWS":"*"},"Action":["s3:GetObject"],"Resource":["arn:aws:s3:::b/*"],"Condition":{"StringEquals":{"aws:SourceArn":["x"]}}}});
        assert!(equivalent(&a, &b));
    }

    #[test]
    fn processor_policy_is_least_privilege() {
        let doc = processor_policy(&input());
        let res = resources(&doc);
        assert!(
            res.iter().all(|r| r != "*" && !r.ends_with(":*:*")),
            "{res:?}"
        );
        assert!(res.contains(&"arn:aws:s3:::w/webp/*".to_string()));
        assert!(res.contains(&"arn:aws:s3:::up/*".to_string()));
        assert!(res.iter().all(|r| !r.starts_with("arn:aws:s3:::w/*")));
        let acts = actions(&doc);
        for forbidden in [
            "s3:PutObjectAcl",
            "s3:DeleteObject",
            "s3:*",
            "dynamodb:*",
            "logs:*",
        ] {
            assert!(!acts.iter().any(|a| a == forbidden), "{forbidden}");
        }
        assert!(res.iter().any(|r| r.contains("log-group:/aws/lambda/fn")));
    }

    #[test]
    fn trust_policy_limited_to_account() {
        let t = lambda_trust_policy("123456789012");
        assert_eq!(
            t["Statement"][0]["Condition"]["StringEquals"]["aws:SourceAccount"],
            "123456789012"
        );
        assert_eq!(
            t["Statement"][0]["Principal"]["Service"],
            "lambda.amazonaws.com"
        );
    }
}
