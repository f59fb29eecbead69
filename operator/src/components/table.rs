//! The DynamoDB metadata table: on-demand, hash key `image_id` (S), the
//! `timestamp-index` GSI on `upload_timestamp` (N, projection ALL) as in the
//! reference, KMS encryption at rest, point-in-time recovery per spec, tags.
//!
//! DynamoDB applies one `UpdateTable` at a time (the table is `UPDATING`
//! until it finishes), so a pass makes at most one and reports `Progressing`;
//! nothing is written while the table or its index is not `ACTIVE`. A table
//! with deletion protection blocks the stack's deletion before anything is
//! deleted (the driver's preflight).

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, CreateGlobalSecondaryIndexAction, GlobalSecondaryIndex,
    GlobalSecondaryIndexUpdate, KeySchemaElement, KeyType, PointInTimeRecoverySpecification,
    Projection, ProjectionType, ScalarAttributeType, SseSpecification, SseStatus, TableStatus, Tag,
};
use imagestack_contract::table::{HASH_KEY, TIMESTAMP_ATTR, TIMESTAMP_INDEX};

use super::{
    Change, Component, ComponentName, Created, Ctx, Deletion, Progress, Updated, code_of,
    extra_tag_keys, is_ours, missing_tags, owner_from_tags, tag_change,
};
use crate::error::{Error, ErrorClass, Result};
use crate::naming::Ownership;

/// The kind of resource, as errors and events name it.
const KIND: &str = "DynamoDB table";

/// What the table should look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredTable {
    /// Table name (generated, or `spec.table.name`).
    pub name: String,
    /// Ownership and user tags.
    pub tags: BTreeMap<String, String>,
    /// `spec.table.pointInTimeRecovery`.
    pub point_in_time_recovery: bool,
}

/// What the table looks like on AWS.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedTable {
    /// Table ARN.
    pub arn: String,
    /// `CREATING`, `ACTIVE`, `UPDATING`, `DELETING`, …
    pub status: String,
    /// Attribute name of the table's hash key.
    pub hash_key: Option<String>,
    /// `PAY_PER_REQUEST` or `PROVISIONED` (`None`: never set, provisioned).
    pub billing_mode: Option<String>,
    /// Index name → (status, hash key, projection type).
    pub indexes: BTreeMap<String, (String, Option<String>, Option<String>)>,
    /// Encrypted with a KMS key (not the AWS owned one).
    pub sse_enabled: bool,
    /// Tags (empty when the table was gone before they could be read).
    pub tags: BTreeMap<String, String>,
    /// Read only for an `ACTIVE` table of this stack.
    pub point_in_time_recovery: Option<bool>,
    /// `DeletionProtectionEnabled`: deleting the table would fail.
    pub deletion_protection: bool,
}

/// A field of the table that can differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// Ownership and user tags.
    Tags,
    /// On-demand capacity.
    BillingMode,
    /// The `timestamp-index` GSI (missing).
    TimestampIndex,
    /// KMS encryption at rest.
    Encryption,
    /// Point-in-time recovery.
    PointInTimeRecovery,
}

/// Every repairable difference; `Err` when the key schema itself differs
/// (immutable: the table must be replaced by a human).
pub fn diff(d: &DesiredTable, o: &ObservedTable) -> Result<Vec<(Field, Change)>> {
    if o.hash_key.as_deref() != Some(HASH_KEY) {
        return Err(Error::Immutable(format!(
            "table {} has hash key {:?}, expected {HASH_KEY:?}; key schemas cannot change: delete or rename the table",
            d.name, o.hash_key
        )));
    }
    let mut out = Vec::new();
    if let Some(c) = tag_change(&d.tags, &o.tags) {
        out.push((Field::Tags, c));
    }
    if o.billing_mode.as_deref() != Some("PAY_PER_REQUEST") {
        out.push((
            Field::BillingMode,
            Change::new(
                "billingMode",
                o.billing_mode.as_deref().unwrap_or("PROVISIONED"),
                "PAY_PER_REQUEST",
            ),
        ));
    }
    match o.indexes.get(TIMESTAMP_INDEX) {
        None => out.push((
            Field::TimestampIndex,
            Change::new(
                "globalSecondaryIndexes",
                "missing timestamp-index",
                "timestamp-index",
            ),
        )),
        Some((_, key, proj)) => {
            if key.as_deref() != Some(TIMESTAMP_ATTR) || proj.as_deref() != Some("ALL") {
                return Err(Error::Immutable(format!(
                    "index {TIMESTAMP_INDEX} of table {} has key {key:?} and projection {proj:?}; expected {TIMESTAMP_ATTR:?} and ALL: delete the index and the operator recreates it",
                    d.name
                )));
            }
        }
    }
    if !o.sse_enabled {
        out.push((
            Field::Encryption,
            Change::new("sse", "AWS owned key", "KMS (aws/dynamodb)"),
        ));
    }
    if o.point_in_time_recovery != Some(d.point_in_time_recovery) {
        out.push((
            Field::PointInTimeRecovery,
            Change::new(
                "pointInTimeRecovery",
                o.point_in_time_recovery
                    .map(|b| b.to_string())
                    .unwrap_or_else(|| "unknown".into()),
                d.point_in_time_recovery,
            ),
        ));
    }
    Ok(out)
}

/// Read the table; `None` when it does not exist. Stops after the tags when
/// the table is not this stack's.
pub async fn observe(ctx: &Ctx<'_>, name: &str) -> Result<Option<ObservedTable>> {
    let ddb = &ctx.aws.dynamodb;
    let out = match ddb.describe_table().table_name(name).send().await {
        Ok(o) => o,
        Err(e) if code_of(&e) == Some("ResourceNotFoundException") => return Ok(None),
        Err(e) => return Err(Error::aws("dynamodb:DescribeTable", e)),
    };
    let Some(t) = out.table() else {
        return Ok(None);
    };
    let mut o = ObservedTable {
        arn: t.table_arn().unwrap_or_default().to_string(),
        status: t
            .table_status()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        hash_key: t
            .key_schema()
            .iter()
            .find(|k| k.key_type() == &KeyType::Hash)
            .map(|k| k.attribute_name().to_string()),
        billing_mode: t
            .billing_mode_summary()
            .and_then(|b| b.billing_mode())
            .map(|b| b.as_str().to_string()),
        sse_enabled: t
            .sse_description()
            .and_then(|s| s.status())
            .is_some_and(|s| {
                matches!(
                    s,
                    SseStatus::Enabled | SseStatus::Enabling | SseStatus::Updating
                )
            }),
        deletion_protection: t.deletion_protection_enabled().unwrap_or(false),
        ..Default::default()
    };
    for g in t.global_secondary_indexes() {
        let name = g.index_name().unwrap_or_default().to_string();
        let status = g
            .index_status()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default();
        let key = g
            .key_schema()
            .iter()
            .find(|k| k.key_type() == &KeyType::Hash)
            .map(|k| k.attribute_name().to_string());
        let proj = g
            .projection()
            .and_then(|p| p.projection_type())
            .map(|p| p.as_str().to_string());
        o.indexes.insert(name, (status, key, proj));
    }
    if o.arn.is_empty() {
        return Ok(Some(o));
    }
    let tags = match ddb
        .list_tags_of_resource()
        .resource_arn(&o.arn)
        .send()
        .await
    {
        Ok(t) => t,
        // Deleted between the two reads (a DELETING table finishing).
        Err(e)
            if o.status == TableStatus::Deleting.as_str()
                && code_of(&e) == Some("ResourceNotFoundException") =>
        {
            return Ok(None);
        }
        Err(e) => return Err(Error::aws("dynamodb:ListTagsOfResource", e)),
    };
    o.tags = tags
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    if !is_ours(ctx, &o.tags) || o.status != TableStatus::Active.as_str() {
        return Ok(Some(o));
    }
    let cb = ddb
        .describe_continuous_backups()
        .table_name(name)
        .send()
        .await
        .map_err(|e| Error::aws("dynamodb:DescribeContinuousBackups", e))?;
    o.point_in_time_recovery = cb
        .continuous_backups_description()
        .and_then(|c| c.point_in_time_recovery_description())
        .and_then(|p| p.point_in_time_recovery_status())
        .map(|s| s.as_str() == "ENABLED");
    Ok(Some(o))
}

/// Why deleting the table would fail, if it would (pure; the preflight).
pub fn deletion_blocker(d: &DesiredTable, o: &ObservedTable) -> Option<Error> {
    o.deletion_protection.then(|| Error::DeletionBlocked {
        kind: KIND,
        name: d.name.clone(),
        why: "deletion protection is enabled: disable it (aws dynamodb update-table \
              --no-deletion-protection-enabled) or set deletionPolicy Retain"
            .into(),
    })
}

fn ddb_tags(tags: &BTreeMap<String, String>) -> Result<Vec<Tag>> {
    tags.iter()
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| Error::InvalidSpec(format!("tag {k}: {e}")))
        })
        .collect()
}

fn key(name: &str, kt: KeyType) -> Result<KeySchemaElement> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kt)
        .build()
        .map_err(|e| Error::InvalidSpec(format!("key schema: {e}")))
}

fn attr(name: &str, t: ScalarAttributeType) -> Result<AttributeDefinition> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(t)
        .build()
        .map_err(|e| Error::InvalidSpec(format!("attribute: {e}")))
}

fn all_projection() -> Projection {
    Projection::builder()
        .projection_type(ProjectionType::All)
        .build()
}

impl Component for DesiredTable {
    type Observed = ObservedTable;

    fn name(&self) -> ComponentName {
        ComponentName::MetadataTable
    }
    fn kind(&self) -> &'static str {
        KIND
    }
    fn id(&self) -> String {
        self.name.clone()
    }
    fn observed_id(&self, seen: &ObservedTable) -> Option<String> {
        (!seen.arn.is_empty()).then(|| seen.arn.clone())
    }

    async fn observe(&self, cx: &Ctx<'_>) -> Result<Option<ObservedTable>> {
        observe(cx, &self.name).await
    }

    fn ownership(&self, cx: &Ctx<'_>, seen: &ObservedTable) -> Ownership {
        owner_from_tags(cx, &seen.tags)
    }

    fn wait(&self, seen: &ObservedTable) -> Option<Progress> {
        if seen.status != TableStatus::Active.as_str() {
            return Some(Progress::new(
                "TableNotActive",
                format!("table {} is {}", self.name, seen.status),
            ));
        }
        seen.indexes
            .iter()
            .find(|(_, (s, _, _))| s != "ACTIVE")
            .map(|(index, (status, _, _))| {
                Progress::new("IndexNotActive", format!("index {index} is {status}"))
            })
    }

    fn diff(&self, _cx: &Ctx<'_>, seen: &ObservedTable) -> Result<Vec<Change>> {
        Ok(diff(self, seen)?.into_iter().map(|(_, c)| c).collect())
    }

    async fn create(&self, cx: &Ctx<'_>) -> Result<Created> {
        let gsi = GlobalSecondaryIndex::builder()
            .index_name(TIMESTAMP_INDEX)
            .key_schema(key(TIMESTAMP_ATTR, KeyType::Hash)?)
            .projection(all_projection())
            .build()
            .map_err(|e| Error::InvalidSpec(format!("index: {e}")))?;
        let res = cx
            .aws
            .dynamodb
            .create_table()
            .table_name(&self.name)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr(HASH_KEY, ScalarAttributeType::S)?)
            .attribute_definitions(attr(TIMESTAMP_ATTR, ScalarAttributeType::N)?)
            .key_schema(key(HASH_KEY, KeyType::Hash)?)
            .global_secondary_indexes(gsi)
            .sse_specification(SseSpecification::builder().enabled(true).build())
            .set_tags(Some(ddb_tags(&self.tags)?))
            .send()
            .await;
        match res {
            Ok(_) => {}
            // Created by an interrupted earlier pass (or concurrently): observed next time.
            Err(e) if code_of(&e) == Some("ResourceInUseException") => {}
            Err(e) => return Err(Error::aws("dynamodb:CreateTable", e)),
        }
        Ok(Created::progressing(
            "TableCreating",
            format!("table {} is CREATING", self.name),
        ))
    }

    async fn update(
        &self,
        cx: &Ctx<'_>,
        seen: &ObservedTable,
        changes: &[Change],
    ) -> Result<Updated> {
        let mut applied = Vec::new();
        for (field, change) in diff(self, seen)? {
            if !changes.contains(&change) {
                continue;
            }
            apply_field(cx, self, seen, field).await?;
            applied.push(change);
            // One UpdateTable at a time: the table is UPDATING until it finishes.
            if matches!(
                field,
                Field::BillingMode | Field::TimestampIndex | Field::Encryption
            ) {
                return Ok(Updated::all(&applied)
                    .progressing("TableUpdating", format!("table {} is UPDATING", self.name)));
            }
        }
        Ok(Updated::all(&applied))
    }

    async fn preflight_delete(&self, _cx: &Ctx<'_>, seen: &ObservedTable) -> Result<()> {
        deletion_blocker(self, seen).map_or(Ok(()), Err)
    }

    async fn delete(&self, cx: &Ctx<'_>, seen: &ObservedTable) -> Result<Deletion> {
        let deleting = || Deletion::InProgress(format!("table {} is DELETING", self.name));
        if seen.status == TableStatus::Deleting.as_str() {
            return Ok(deleting());
        }
        if let Some(blocked) = deletion_blocker(self, seen) {
            return Err(blocked);
        }
        match cx
            .aws
            .dynamodb
            .delete_table()
            .table_name(&self.name)
            .send()
            .await
        {
            Ok(_) => Ok(deleting()),
            Err(e) if code_of(&e) == Some("ResourceNotFoundException") => Ok(Deletion::Gone),
            // CREATING/UPDATING tables cannot be deleted yet.
            Err(e) if code_of(&e) == Some("ResourceInUseException") => Err(Error::Aws {
                action: "dynamodb:DeleteTable".into(),
                code: "ResourceInUseException".into(),
                message: format!("table {} is busy; retrying", self.name),
                class: ErrorClass::Retryable,
            }),
            Err(e) => Err(Error::aws("dynamodb:DeleteTable", e)),
        }
    }
}

async fn apply_field(ctx: &Ctx<'_>, d: &DesiredTable, o: &ObservedTable, f: Field) -> Result<()> {
    let ddb = &ctx.aws.dynamodb;
    match f {
        Field::Tags => {
            let extra = extra_tag_keys(&d.tags, &o.tags);
            if !extra.is_empty() {
                ddb.untag_resource()
                    .resource_arn(&o.arn)
                    .set_tag_keys(Some(extra))
                    .send()
                    .await
                    .map_err(|e| Error::aws("dynamodb:UntagResource", e))?;
            }
            let missing: BTreeMap<String, String> = missing_tags(&d.tags, &o.tags);
            if !missing.is_empty() {
                ddb.tag_resource()
                    .resource_arn(&o.arn)
                    .set_tags(Some(ddb_tags(&missing)?))
                    .send()
                    .await
                    .map_err(|e| Error::aws("dynamodb:TagResource", e))?;
            }
        }
        Field::BillingMode => {
            ddb.update_table()
                .table_name(&d.name)
                .billing_mode(BillingMode::PayPerRequest)
                .send()
                .await
                .map_err(|e| Error::aws("dynamodb:UpdateTable", e))?;
        }
        Field::TimestampIndex => {
            let create = CreateGlobalSecondaryIndexAction::builder()
                .index_name(TIMESTAMP_INDEX)
                .key_schema(key(TIMESTAMP_ATTR, KeyType::Hash)?)
                .projection(all_projection())
                .build()
                .map_err(|e| Error::InvalidSpec(format!("index: {e}")))?;
            ddb.update_table()
                .table_name(&d.name)
                .attribute_definitions(attr(HASH_KEY, ScalarAttributeType::S)?)
                .attribute_definitions(attr(TIMESTAMP_ATTR, ScalarAttributeType::N)?)
                .global_secondary_index_updates(
                    GlobalSecondaryIndexUpdate::builder().create(create).build(),
                )
                .send()
                .await
                .map_err(|e| Error::aws("dynamodb:UpdateTable", e))?;
        }
        Field::Encryption => {
            ddb.update_table()
                .table_name(&d.name)
                .sse_specification(SseSpecification::builder().enabled(true).build())
                .send()
                .await
                .map_err(|e| Error::aws("dynamodb:UpdateTable", e))?;
        }
        Field::PointInTimeRecovery => {
            let spec = PointInTimeRecoverySpecification::builder()
                .point_in_time_recovery_enabled(d.point_in_time_recovery)
                .build()
                .map_err(|e| Error::InvalidSpec(format!("pitr: {e}")))?;
            ddb.update_continuous_backups()
                .table_name(&d.name)
                .point_in_time_recovery_specification(spec)
                .send()
                .await
                .map_err(|e| Error::aws("dynamodb:UpdateContinuousBackups", e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired() -> DesiredTable {
        DesiredTable {
            name: "t".into(),
            tags: BTreeMap::from([("a".to_string(), "b".to_string())]),
            point_in_time_recovery: false,
        }
    }

    fn in_sync() -> ObservedTable {
        ObservedTable {
            arn: "arn:aws:dynamodb:us-east-1:1:table/t".into(),
            status: "ACTIVE".into(),
            hash_key: Some(HASH_KEY.into()),
            billing_mode: Some("PAY_PER_REQUEST".into()),
            indexes: BTreeMap::from([(
                TIMESTAMP_INDEX.to_string(),
                (
                    "ACTIVE".to_string(),
                    Some(TIMESTAMP_ATTR.to_string()),
                    Some("ALL".to_string()),
                ),
            )]),
            sse_enabled: true,
            tags: BTreeMap::from([("a".to_string(), "b".to_string())]),
            point_in_time_recovery: Some(false),
            deletion_protection: false,
        }
    }

    #[test]
    fn in_sync_no_diff() {
        assert!(diff(&desired(), &in_sync()).unwrap().is_empty());
    }

    #[test]
    fn drift_detected() {
        let mut o = in_sync();
        o.indexes.clear();
        o.point_in_time_recovery = Some(true);
        o.billing_mode = Some("PROVISIONED".into());
        let fields: Vec<Field> = diff(&desired(), &o)
            .unwrap()
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(
            fields,
            vec![
                Field::BillingMode,
                Field::TimestampIndex,
                Field::PointInTimeRecovery
            ]
        );
    }

    #[test]
    fn wrong_key_schema_is_immutable() {
        let mut o = in_sync();
        o.hash_key = Some("id".into());
        assert!(matches!(diff(&desired(), &o), Err(Error::Immutable(_))));
    }

    #[test]
    fn deletion_protection_blocks_deletion() {
        let mut o = in_sync();
        assert!(deletion_blocker(&desired(), &o).is_none());
        o.deletion_protection = true;
        let e = deletion_blocker(&desired(), &o).unwrap();
        assert_eq!(e.reason(), "DeletionBlocked");
        let m = e.to_string();
        assert!(m.contains("DynamoDB table t"), "{m}");
        assert!(m.contains("deletion protection is enabled"), "{m}");
        assert!(m.contains("deletionPolicy Retain"), "{m}");
    }

    #[test]
    fn nothing_is_written_until_table_and_index_are_active() {
        let d = desired();
        let mut o = in_sync();
        assert_eq!(d.wait(&o), None);
        o.status = "UPDATING".into();
        assert_eq!(d.wait(&o).unwrap().reason, "TableNotActive");
        o.status = "ACTIVE".into();
        if let Some(index) = o.indexes.get_mut(TIMESTAMP_INDEX) {
            index.0 = "CREATING".into();
        }
        assert_eq!(d.wait(&o).unwrap().reason, "IndexNotActive");
    }
}
