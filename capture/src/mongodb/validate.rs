//! Before anything else: is the source able to give change streams, may the
//! user read them, and do the collections exist and keep the images asked
//! for. Each problem is one line naming the fix.

use bson::{doc, Bson, Document};
use ferry_core::meta::TableId;
use mongodb::Client;

use crate::filter::TableFilter;
use crate::mongodb::error::CaptureError;
use crate::mongodb::Images;

/// Databases that hold no user data.
const INTERNAL: [&str; 3] = ["admin", "local", "config"];

/// The included collections, or every problem found.
pub async fn validate(
    client: &Client,
    filter: &TableFilter,
    full_document: Images,
    before: Images,
) -> Result<Vec<TableId>, CaptureError> {
    let admin = client.database("admin");
    let hello = match admin.run_command(doc! {"hello": 1}).await {
        Ok(reply) => reply,
        Err(_) => admin.run_command(doc! {"isMaster": 1}).await?,
    };
    let mut problems = Vec::new();
    if let Some(problem) = topology_problem(&hello) {
        problems.push(problem);
    }

    let mut collections = Vec::new();
    for db in client.list_database_names().await? {
        if INTERNAL.contains(&db.as_str()) || !filter.includes_schema(&db) {
            continue;
        }
        for coll in client.database(&db).list_collection_names().await? {
            let id = TableId::new(db.clone(), coll);
            if !id.table.starts_with("system.") && filter.includes(&id) {
                collections.push(id);
            }
        }
    }
    collections.sort();
    for missing in filter.unmatched(&collections) {
        problems.push(format!(
            "collection {missing} does not exist: check --collections (a collection exists once it has a document)"
        ));
    }

    let status = admin
        .run_command(doc! {"connectionStatus": 1, "showPrivileges": true})
        .await?;
    problems.extend(privilege_problems(&status, &collections));

    if full_document == Images::Required || before == Images::Required {
        for id in &collections {
            let reply = client
                .database(&id.schema)
                .run_command(doc! {"listCollections": 1, "filter": {"name": &id.table}})
                .await?;
            if !images_enabled(&reply) {
                problems.push(format!(
                    "collection {id} does not record pre- and post-images, which --before required / \
                     --full-document required need: run db.getSiblingDB({:?}).runCommand({{collMod: {:?}, \
                     changeStreamPreAndPostImages: {{enabled: true}}}}) (MongoDB 6.0+)",
                    id.schema, id.table
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(collections)
    } else {
        Err(CaptureError::Invalid(problems))
    }
}

/// A standalone server has no change streams.
pub fn topology_problem(hello: &Document) -> Option<String> {
    let replica_set = hello.get_str("setName").is_ok();
    let router = hello.get_str("msg").ok() == Some("isdbgrid");
    (!replica_set && !router).then(|| {
        "the source is a standalone mongod, which has no change streams: run it as a replica set \
         (mongod --replSet rs0, then rs.initiate()) or connect to a sharded cluster's mongos"
            .to_owned()
    })
}

/// The actions `find` and `changeStream` each collection needs that the
/// user's privileges (`connectionStatus` with `showPrivileges`) do not give.
/// A server without access control reports no authenticated user: nothing
/// to check.
pub fn privilege_problems(status: &Document, collections: &[TableId]) -> Vec<String> {
    let Ok(auth) = status.get_document("authInfo") else {
        return Vec::new();
    };
    let users = auth.get_array("authenticatedUsers").map(Vec::len).unwrap_or(0);
    if users == 0 {
        return Vec::new();
    }
    let privileges = auth
        .get_array("authenticatedUserPrivileges")
        .cloned()
        .unwrap_or_default();
    let allows = |id: &TableId, action: &str| {
        privileges.iter().filter_map(Bson::as_document).any(|p| {
            let acts = p
                .get_array("actions")
                .is_ok_and(|a| a.iter().any(|x| x.as_str() == Some(action)));
            let Ok(resource) = p.get_document("resource") else {
                return false;
            };
            let any = resource.get_bool("anyResource").ok() == Some(true);
            let db = resource.get_str("db").is_ok_and(|d| d.is_empty() || d == id.schema);
            let coll = resource
                .get_str("collection")
                .is_ok_and(|c| c.is_empty() || c == id.table);
            acts && (any || (db && coll))
        })
    };
    let mut problems = Vec::new();
    for id in collections {
        let missing: Vec<&str> = ["find", "changeStream"]
            .into_iter()
            .filter(|a| !allows(id, a))
            .collect();
        if !missing.is_empty() {
            problems.push(format!(
                "the user may not {} on {id}: grant it the read role on database {:?} \
                 (db.grantRolesToUser(USER, [{{role: \"read\", db: {:?}}}]))",
                missing.join(" or "),
                id.schema,
                id.schema
            ));
        }
    }
    problems
}

/// Whether a `listCollections` reply's collection records pre- and post-images.
pub fn images_enabled(reply: &Document) -> bool {
    reply
        .get_document("cursor")
        .and_then(|c| c.get_array("firstBatch"))
        .ok()
        .and_then(|b| b.first())
        .and_then(Bson::as_document)
        .and_then(|c| c.get_document("options").ok())
        .and_then(|o| o.get_document("changeStreamPreAndPostImages").ok())
        .is_some_and(|i| i.get_bool("enabled").ok() == Some(true))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_standalone_server_is_refused_and_replica_sets_and_routers_are_not() {
        let problem = topology_problem(&doc! {"isWritablePrimary": true, "maxWireVersion": 21}).unwrap();
        assert!(problem.contains("--replSet"), "{problem}");
        assert_eq!(
            topology_problem(&doc! {"setName": "rs0", "isWritablePrimary": true}),
            None
        );
        assert_eq!(topology_problem(&doc! {"msg": "isdbgrid"}), None);
    }

    #[test]
    fn missing_find_or_change_stream_privileges_are_named() {
        let shop = TableId::new("shop", "orders");
        let other = TableId::new("billing", "invoices");
        // connectionStatus of a user with the read role on shop only.
        let status = doc! {"authInfo": {
            "authenticatedUsers": [{"user": "ferry", "db": "admin"}],
            "authenticatedUserPrivileges": [
                {"resource": {"db": "shop", "collection": ""}, "actions": ["changeStream", "collStats", "find", "listIndexes"]},
                {"resource": {"db": "billing", "collection": "invoices"}, "actions": ["find"]},
            ],
        }, "ok": 1};
        let problems = privilege_problems(&status, &[shop.clone(), other]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("may not changeStream on billing.invoices"),
            "{problems:?}"
        );
        let any = doc! {"authInfo": {"authenticatedUsers": [{"user": "root"}],
        "authenticatedUserPrivileges": [{"resource": {"anyResource": true}, "actions": ["find", "changeStream"]}]}};
        assert!(privilege_problems(&any, std::slice::from_ref(&shop)).is_empty());
        // No access control: nothing to check.
        let open = doc! {"authInfo": {"authenticatedUsers": [], "authenticatedUserPrivileges": []}};
        assert!(privilege_problems(&open, &[shop]).is_empty());
    }

    #[test]
    fn images_are_read_from_list_collections() {
        let reply = |options: Document| {
            doc! {"cursor": {"id": 0_i64, "ns": "shop.$cmd.listCollections", "firstBatch": [
                {"name": "orders", "type": "collection", "options": options},
            ]}, "ok": 1}
        };
        assert!(images_enabled(&reply(
            doc! {"changeStreamPreAndPostImages": {"enabled": true}}
        )));
        assert!(!images_enabled(&reply(
            doc! {"changeStreamPreAndPostImages": {"enabled": false}}
        )));
        assert!(!images_enabled(&reply(doc! {})));
    }
}
