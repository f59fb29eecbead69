//! The IAM policy the operator itself needs (`operator iam-policy`), and the
//! one `operator redrive` needs (`--redrive`).
//!
//! Resources are scoped to the names the operator generates (everything
//! starts with `imagestack-`: buckets, table, role, function and its log
//! group, queue, alarms, dashboard); `iam:PassRole` only on the processor
//! roles and only to Lambda. `*` is used only where AWS has no resource-level
//! permission for the action: `cloudfront:ListDistributions`,
//! `cloudfront:ListOriginAccessControls`, `cloudfront:ListCachePolicies`
//! (list calls), and CloudFront distributions, origin access controls and
//! cache policies themselves are scoped to the account (`distribution/*`,
//! `origin-access-control/*`, `cache-policy/*`): their ids are
//! random, not names the operator chooses; `logs:DescribeLogGroups` is
//! authorised on the account's log groups (the call filters by name prefix).
//! `sts:GetCallerIdentity` needs no permission.
//!
//! Names given in the spec instead of the generated ones (`buckets.*.name`,
//! `table.name`) must also start with `imagestack-`, or be added to the
//! policy by hand.
//!
//! [`iam_actions`] maps each SDK operation the operator calls (as its errors
//! name it, `service:Operation`) to the IAM actions that authorise it; a test
//! reads every such name from the source and checks the policy allows it.

use serde_json::{Value, json};

use crate::naming::NAME_PREFIX;

/// The IAM actions that authorise an SDK operation named `service:Operation`
/// (most are the same name; S3 and CloudFront have exceptions).
pub fn iam_actions(call: &str) -> Vec<&'static str> {
    let one = |a: &'static str| vec![a];
    match call {
        "s3:HeadBucket" => one("s3:ListBucket"),
        "s3:ListObjectVersions" => one("s3:ListBucketVersions"),
        "s3:DeleteObjects" => vec!["s3:DeleteObject", "s3:DeleteObjectVersion"],
        "s3:GetBucketCors" => one("s3:GetBucketCORS"),
        "s3:PutBucketCors" | "s3:DeleteBucketCors" => one("s3:PutBucketCORS"),
        "s3:GetPublicAccessBlock" => one("s3:GetBucketPublicAccessBlock"),
        "s3:PutPublicAccessBlock" => one("s3:PutBucketPublicAccessBlock"),
        "s3:GetBucketEncryption" => one("s3:GetEncryptionConfiguration"),
        "s3:PutBucketEncryption" => one("s3:PutEncryptionConfiguration"),
        "s3:GetBucketNotificationConfiguration" => one("s3:GetBucketNotification"),
        "s3:PutBucketNotificationConfiguration" => one("s3:PutBucketNotification"),
        "s3:GetBucketAccelerateConfiguration" => one("s3:GetAccelerateConfiguration"),
        "s3:PutBucketAccelerateConfiguration" => one("s3:PutAccelerateConfiguration"),
        // Created with its tags and object ownership in the same call.
        "s3:CreateBucket" => vec![
            "s3:CreateBucket",
            "s3:PutBucketTagging",
            "s3:PutBucketOwnershipControls",
        ],
        "cloudfront:CreateDistributionWithTags" => {
            vec!["cloudfront:CreateDistribution", "cloudfront:TagResource"]
        }
        // Created with their tags: AWS authorises the tags as the service's
        // tagging action ("tag on create").
        "iam:CreateRole" => vec!["iam:CreateRole", "iam:TagRole"],
        "sqs:CreateQueue" => vec!["sqs:CreateQueue", "sqs:TagQueue"],
        "logs:CreateLogGroup" => vec!["logs:CreateLogGroup", "logs:TagResource"],
        "dynamodb:CreateTable" => vec!["dynamodb:CreateTable", "dynamodb:TagResource"],
        "cloudwatch:PutMetricAlarm" => vec!["cloudwatch:PutMetricAlarm", "cloudwatch:TagResource"],
        // The function runs with the processor role, and is created with its tags.
        "lambda:CreateFunction" => vec![
            "lambda:CreateFunction",
            "iam:PassRole",
            "lambda:TagResource",
        ],
        // GetFunction of a tagged function (ours always are) returns the tags:
        // it also needs lambda:ListTags.
        "lambda:GetFunction" => vec!["lambda:GetFunction", "lambda:ListTags"],
        "lambda:UpdateFunctionConfiguration" => {
            vec!["lambda:UpdateFunctionConfiguration", "iam:PassRole"]
        }
        "sts:GetCallerIdentity" => vec![],
        other => match ALL_ACTIONS.iter().find(|a| **a == other) {
            Some(a) => vec![*a],
            None => vec![],
        },
    }
}

/// Every IAM action name [`iam_actions`] can return as itself.
const ALL_ACTIONS: &[&str] = &[
    "s3:ListBucket",
    "s3:DeleteBucket",
    "s3:DeleteBucketPolicy",
    "s3:GetBucketOwnershipControls",
    "s3:GetBucketPolicy",
    "s3:GetBucketTagging",
    "s3:GetBucketVersioning",
    "s3:GetLifecycleConfiguration",
    "s3:PutBucketOwnershipControls",
    "s3:PutBucketPolicy",
    "s3:PutBucketTagging",
    "s3:PutBucketVersioning",
    "s3:PutLifecycleConfiguration",
    "dynamodb:CreateTable",
    "dynamodb:DeleteTable",
    "dynamodb:DescribeContinuousBackups",
    "dynamodb:DescribeTable",
    "dynamodb:ListTagsOfResource",
    "dynamodb:TagResource",
    "dynamodb:UntagResource",
    "dynamodb:UpdateContinuousBackups",
    "dynamodb:UpdateTable",
    "iam:CreateRole",
    "iam:DeleteRole",
    "iam:DeleteRolePolicy",
    "iam:DetachRolePolicy",
    "iam:GetRole",
    "iam:GetRolePolicy",
    "iam:ListAttachedRolePolicies",
    "iam:ListRolePolicies",
    "iam:PutRolePolicy",
    "iam:TagRole",
    "iam:UntagRole",
    "iam:UpdateAssumeRolePolicy",
    "lambda:AddPermission",
    "lambda:DeleteFunction",
    "lambda:DeleteFunctionConcurrency",
    "lambda:GetFunction",
    "lambda:GetFunctionEventInvokeConfig",
    "lambda:GetPolicy",
    "lambda:ListTags",
    "lambda:InvokeFunction",
    "lambda:PutFunctionConcurrency",
    "lambda:PutFunctionEventInvokeConfig",
    "lambda:RemovePermission",
    "lambda:TagResource",
    "lambda:UntagResource",
    "lambda:UpdateFunctionCode",
    "logs:CreateLogGroup",
    "logs:DeleteLogGroup",
    "logs:DescribeLogGroups",
    "logs:PutRetentionPolicy",
    "logs:TagResource",
    "sqs:CreateQueue",
    "sqs:DeleteMessage",
    "sqs:DeleteQueue",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
    "sqs:ListQueueTags",
    "sqs:ReceiveMessage",
    "sqs:SetQueueAttributes",
    "sqs:TagQueue",
    "sqs:UntagQueue",
    "cloudwatch:DeleteAlarms",
    "cloudwatch:DeleteDashboards",
    "cloudwatch:DescribeAlarms",
    "cloudwatch:GetDashboard",
    "cloudwatch:ListTagsForResource",
    "cloudwatch:PutDashboard",
    "cloudwatch:PutMetricAlarm",
    "cloudwatch:TagResource",
    "cloudwatch:UntagResource",
    "cloudfront:CreateCachePolicy",
    "cloudfront:CreateOriginAccessControl",
    "cloudfront:DeleteCachePolicy",
    "cloudfront:DeleteDistribution",
    "cloudfront:DeleteOriginAccessControl",
    "cloudfront:GetCachePolicy",
    "cloudfront:GetCachePolicyConfig",
    "cloudfront:GetDistribution",
    "cloudfront:GetDistributionConfig",
    "cloudfront:GetOriginAccessControl",
    "cloudfront:GetOriginAccessControlConfig",
    "cloudfront:ListCachePolicies",
    "cloudfront:ListDistributions",
    "cloudfront:ListOriginAccessControls",
    "cloudfront:ListTagsForResource",
    "cloudfront:TagResource",
    "cloudfront:UntagResource",
    "cloudfront:UpdateCachePolicy",
    "cloudfront:UpdateDistribution",
    "cloudfront:UpdateOriginAccessControl",
    "cloudfront:CreateFunction",
    "cloudfront:DescribeFunction",
    "cloudfront:GetFunction",
    "cloudfront:UpdateFunction",
    "cloudfront:PublishFunction",
    "cloudfront:DeleteFunction",
];

fn statement(sid: &str, actions: &[&str], resources: Vec<String>) -> Value {
    json!({"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources})
}

/// The operator's policy in `partition` for `account` (`*` for any account).
pub fn operator_policy(partition: &str, account: &str) -> Value {
    let p = partition;
    let a = account;
    let n = NAME_PREFIX;
    json!({
        "Version": crate::policy::VERSION,
        "Statement": [
            statement("Buckets", &[
                "s3:CreateBucket", "s3:DeleteBucket", "s3:ListBucket", "s3:ListBucketVersions",
                "s3:GetBucketTagging", "s3:PutBucketTagging",
                "s3:GetBucketVersioning", "s3:PutBucketVersioning",
                "s3:GetAccelerateConfiguration", "s3:PutAccelerateConfiguration",
                "s3:GetBucketCORS", "s3:PutBucketCORS",
                "s3:GetBucketPublicAccessBlock", "s3:PutBucketPublicAccessBlock",
                "s3:GetEncryptionConfiguration", "s3:PutEncryptionConfiguration",
                "s3:GetBucketOwnershipControls", "s3:PutBucketOwnershipControls",
                "s3:GetBucketPolicy", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy",
                "s3:GetBucketNotification", "s3:PutBucketNotification",
                "s3:GetLifecycleConfiguration", "s3:PutLifecycleConfiguration",
            ], vec![format!("arn:{p}:s3:::{n}-*")]),
            // Emptying a bucket on deletion (`buckets.emptyOnDelete`).
            statement("EmptyBuckets", &["s3:DeleteObject", "s3:DeleteObjectVersion"],
                vec![format!("arn:{p}:s3:::{n}-*/*")]),
            statement("Table", &[
                "dynamodb:CreateTable", "dynamodb:DeleteTable", "dynamodb:DescribeTable",
                "dynamodb:UpdateTable", "dynamodb:DescribeContinuousBackups",
                "dynamodb:UpdateContinuousBackups", "dynamodb:ListTagsOfResource",
                "dynamodb:TagResource", "dynamodb:UntagResource",
            ], vec![format!("arn:{p}:dynamodb:*:{a}:table/{n}-*")]),
            statement("ProcessorRole", &[
                "iam:CreateRole", "iam:DeleteRole", "iam:GetRole", "iam:TagRole",
                "iam:UntagRole", "iam:UpdateAssumeRolePolicy", "iam:GetRolePolicy",
                "iam:PutRolePolicy", "iam:DeleteRolePolicy", "iam:ListRolePolicies",
                "iam:ListAttachedRolePolicies", "iam:DetachRolePolicy",
            ], vec![format!("arn:{p}:iam::{a}:role/{n}-*")]),
            json!({
                "Sid": "PassProcessorRoleToLambda",
                "Effect": "Allow",
                "Action": ["iam:PassRole"],
                "Resource": [format!("arn:{p}:iam::{a}:role/{n}-*")],
                "Condition": {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}}
            }),
            statement("Function", &[
                "lambda:CreateFunction", "lambda:DeleteFunction", "lambda:GetFunction",
                "lambda:UpdateFunctionCode", "lambda:UpdateFunctionConfiguration",
                "lambda:TagResource", "lambda:UntagResource", "lambda:ListTags",
                "lambda:GetFunctionEventInvokeConfig", "lambda:PutFunctionEventInvokeConfig",
                "lambda:PutFunctionConcurrency", "lambda:DeleteFunctionConcurrency",
                "lambda:AddPermission", "lambda:RemovePermission", "lambda:GetPolicy",
            ], vec![format!("arn:{p}:lambda:*:{a}:function:{n}-*")]),
            statement("FunctionLogs", &[
                "logs:CreateLogGroup", "logs:DeleteLogGroup", "logs:PutRetentionPolicy",
                "logs:TagResource",
            ], vec![format!("arn:{p}:logs:*:{a}:log-group:/aws/lambda/{n}-*")]),
            // DescribeLogGroups is authorised on the account's log groups (with a name prefix filter).
            statement("FindLogGroups", &["logs:DescribeLogGroups"],
                vec![format!("arn:{p}:logs:*:{a}:log-group:*")]),
            statement("FailedEventQueue", &[
                "sqs:CreateQueue", "sqs:DeleteQueue", "sqs:GetQueueUrl", "sqs:GetQueueAttributes",
                "sqs:SetQueueAttributes", "sqs:ListQueueTags", "sqs:TagQueue", "sqs:UntagQueue",
            ], vec![format!("arn:{p}:sqs:*:{a}:{n}-*")]),
            statement("Alarms", &[
                "cloudwatch:PutMetricAlarm", "cloudwatch:DescribeAlarms", "cloudwatch:DeleteAlarms",
                "cloudwatch:ListTagsForResource", "cloudwatch:TagResource", "cloudwatch:UntagResource",
            ], vec![format!("arn:{p}:cloudwatch:*:{a}:alarm:{n}-*")]),
            statement("Dashboard", &[
                "cloudwatch:GetDashboard", "cloudwatch:PutDashboard", "cloudwatch:DeleteDashboards",
            ], vec![format!("arn:{p}:cloudwatch::{a}:dashboard/{n}-*")]),
            // Distribution and origin access control ids are random (not names the operator
            // chooses): scoped to the account; ownership is checked from tags and the
            // deterministic CallerReference before any write.
            statement("Distribution", &[
                "cloudfront:CreateDistribution", "cloudfront:GetDistribution",
                "cloudfront:GetDistributionConfig", "cloudfront:UpdateDistribution",
                "cloudfront:DeleteDistribution", "cloudfront:ListTagsForResource",
                "cloudfront:TagResource", "cloudfront:UntagResource",
            ], vec![format!("arn:{p}:cloudfront::{a}:distribution/*")]),
            statement("OriginAccessControl", &[
                "cloudfront:CreateOriginAccessControl", "cloudfront:GetOriginAccessControl",
                "cloudfront:GetOriginAccessControlConfig", "cloudfront:UpdateOriginAccessControl",
                "cloudfront:DeleteOriginAccessControl",
            ], vec![format!("arn:{p}:cloudfront::{a}:origin-access-control/*")]),
            // The stack's CloudFront Function (its name is generated: `imagestack-<env>-edge-…`).
            statement("EdgeFunction", &[
                "cloudfront:CreateFunction", "cloudfront:DescribeFunction", "cloudfront:GetFunction",
                "cloudfront:UpdateFunction", "cloudfront:PublishFunction", "cloudfront:DeleteFunction",
            ], vec![format!("arn:{p}:cloudfront::{a}:function/{n}-*")]),
            // Cache policies (resource type `cache-policy`, ARN
            // arn:PARTITION:cloudfront::ACCOUNT:cache-policy/ID): random ids, scoped to the
            // account; cache policies cannot be tagged, so ownership is the deterministic
            // name plus the comment naming the stack, checked before any write.
            statement("CachePolicy", &[
                "cloudfront:CreateCachePolicy", "cloudfront:GetCachePolicy",
                "cloudfront:GetCachePolicyConfig", "cloudfront:UpdateCachePolicy",
                "cloudfront:DeleteCachePolicy",
            ], vec![format!("arn:{p}:cloudfront::{a}:cache-policy/*")]),
            // List calls have no resource-level permissions.
            statement("ListCloudFront", &[
                "cloudfront:ListDistributions", "cloudfront:ListOriginAccessControls",
                "cloudfront:ListCachePolicies",
            ], vec!["*".to_string()]),
        ]
    })
}

/// What `operator redrive` needs: the stacks' queues and functions.
pub fn redrive_policy(partition: &str, account: &str) -> Value {
    let (p, a, n) = (partition, account, NAME_PREFIX);
    json!({
        "Version": crate::policy::VERSION,
        "Statement": [
            statement("ReadFailedEvents", &[
                "sqs:GetQueueUrl", "sqs:GetQueueAttributes", "sqs:ReceiveMessage", "sqs:DeleteMessage",
            ], vec![format!("arn:{p}:sqs:*:{a}:{n}-*")]),
            statement("InvokeProcessor", &["lambda:InvokeFunction"],
                vec![format!("arn:{p}:lambda:*:{a}:function:{n}-*")]),
        ]
    })
}

/// Whether `doc` has a statement allowing `action` (exact names; no wildcards are used).
pub fn allows(doc: &Value, action: &str) -> bool {
    crate::policy::statements(doc).iter().any(|s| {
        s["Effect"] == "Allow"
            && s["Action"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|x| x.as_str().is_some_and(|x| x.eq_ignore_ascii_case(action)))
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `"service:Operation"` the operator names in its AWS errors, read
    /// from the source: the calls it makes.
    fn calls_in_source(files: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        for text in files {
            for (i, _) in text.match_indices("Error::aws(\"") {
                let rest = &text[i + "Error::aws(\"".len()..];
                if let Some(end) = rest.find('"') {
                    out.push(rest[..end].to_string());
                }
            }
            for pat in ["action: \"", "const ACTION: &str = \""] {
                for (i, _) in text.match_indices(pat) {
                    let rest = &text[i + pat.len()..];
                    if let Some(end) = rest.find('"') {
                        out.push(rest[..end].to_string());
                    }
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }

    const OPERATOR_SOURCES: &[&str] = &[
        include_str!("components/bucket.rs"),
        include_str!("components/cache_policy.rs"),
        include_str!("components/cdn_grant.rs"),
        include_str!("components/dashboard.rs"),
        include_str!("components/distribution.rs"),
        include_str!("components/edge_function.rs"),
        include_str!("components/function.rs"),
        include_str!("components/notification.rs"),
        include_str!("components/origin_access.rs"),
        include_str!("components/permission.rs"),
        include_str!("components/role.rs"),
        include_str!("components/table.rs"),
        include_str!("components/alarm.rs"),
        include_str!("components/queue.rs"),
        include_str!("aws.rs"),
    ];

    #[test]
    fn every_call_the_operator_makes_is_allowed() {
        let doc = operator_policy("aws", "123456789012");
        let calls = calls_in_source(OPERATOR_SOURCES);
        assert!(calls.len() > 60, "{calls:?}");
        for call in &calls {
            let needed = iam_actions(call);
            assert!(
                !needed.is_empty() || call == "sts:GetCallerIdentity",
                "{call}: no IAM action known for it (add it to iam_actions)"
            );
            for action in needed {
                assert!(allows(&doc, action), "{call} needs {action}");
            }
        }
    }

    #[test]
    fn every_call_redrive_makes_is_allowed() {
        let doc = redrive_policy("aws", "123456789012");
        let calls = calls_in_source(&[include_str!("redrive.rs")]);
        assert!(!calls.is_empty());
        let queue_lookup = ["sqs:GetQueueUrl"];
        for call in calls.iter().map(String::as_str).chain(queue_lookup) {
            for action in iam_actions(call) {
                assert!(allows(&doc, action), "{call} needs {action}");
            }
        }
    }

    #[test]
    fn scoped_to_generated_names_and_pass_role_only_to_lambda() {
        let doc = operator_policy("aws", "123456789012");
        for s in crate::policy::statements(&doc) {
            let sid = s["Sid"].as_str().unwrap_or_default().to_string();
            for r in s["Resource"].as_array().unwrap() {
                let r = r.as_str().unwrap();
                if r == "*" {
                    assert_eq!(sid, "ListCloudFront", "only list calls on *");
                } else if !r.contains(":cloudfront::") && sid != "FindLogGroups" {
                    assert!(r.contains("imagestack-"), "{sid}: {r}");
                }
            }
            if s["Action"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a == "iam:PassRole")
            {
                assert_eq!(sid, "PassProcessorRoleToLambda");
                assert_eq!(
                    s["Condition"]["StringEquals"]["iam:PassedToService"],
                    "lambda.amazonaws.com"
                );
            }
        }
        // The operator never invokes or reads the queue's messages; redrive does.
        assert!(!allows(&doc, "lambda:InvokeFunction"));
        assert!(!allows(&doc, "sqs:ReceiveMessage"));
    }
}
