//! The read model in PostgreSQL (`--read-model postgres://user@host:port/db`),
//! shared by every shop instance pointed at the same database: their
//! projectors consume in one consumer group (named after the database's
//! `shop_id`), so the partitions are split between them, and every instance
//! answers queries from the same rows.
//!
//! Tables (every row carries the `generation` it belongs to, so a replay
//! fills a new generation beside the live one): `shop_orders` (the order
//! document as JSONB, with the columns the listings filter and sort on),
//! `shop_payments`, `shop_notifications` (the notifier's notifications, one
//! row per id), `shop_minutes`, `shop_aggregates`, `shop_offsets` (the
//! next offset to apply per topic-partition), and `shop_meta` (the current
//! generation and the shop id). The schema is migrated at start, versioned in
//! `shop_schema_version`, under an advisory lock so nodes starting together
//! migrate once.
//!
//! A batch is applied in ONE transaction: `shop_meta` is read `FOR SHARE`
//! (an install of a replayed generation takes it `FOR UPDATE`, so a batch
//! never lands in a generation that was replaced), the aggregates row is
//! locked `FOR UPDATE` (applies of several nodes serialise on it), the
//! touched orders, the batch's notification ids already kept and the stored
//! offsets are read, the rule (`rule`) runs,
//! records below the stored offsets are skipped (a node that lost its
//! partition mid-batch cannot apply it twice), and the outcome and the new
//! offsets are written. A crash before the commit leaves nothing; after it,
//! the stored offsets say exactly where to resume.
//!
//! Driver: `tokio-postgres` without TLS (`NoTls`); the database is expected on
//! a trusted network (loopback or a private one). One connection for writes
//! (transactions, behind a mutex), one for reads (pipelined); each is
//! reopened when it closes.
//!
//! Must never: talk to Kafka, shape JSON, or hold a transaction across a
//! call into another layer.

use std::str::FromStr;
use std::sync::Arc;

use tokio::sync::Mutex;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Transaction};

use super::query::{DeliveryFilter, OrderFilter, Page, PaymentFilter};
use super::rule::{self, Outcome};
use super::store::{
    decode, encode, Applied, Model, ModelError, ModelStore, NotificationRow, Offsets, SourceRecord,
};
use crate::app::domain::analytics::{Aggregates, MinuteBucket};
use crate::app::domain::order::{OrderRecord, PaymentEntry};

/// Key of the advisory lock held while migrating ("sluice" in ASCII).
const MIGRATION_LOCK: i64 = 0x736c_7569_6365;

/// The schema, one migration per version, applied in order.
const MIGRATIONS: &[&str] = &[
    // 1: the read model's tables.
    r#"
    CREATE TABLE shop_meta (
        id integer PRIMARY KEY CHECK (id = 1),
        generation bigint NOT NULL,
        shop_id text NOT NULL
    );
    INSERT INTO shop_meta (id, generation, shop_id)
        VALUES (1, 1, substr(md5(random()::text || clock_timestamp()::text), 1, 12));
    CREATE SEQUENCE shop_generation_seq START 2;
    CREATE TABLE shop_orders (
        generation bigint NOT NULL,
        order_id text COLLATE "C" NOT NULL,
        created_at bigint,
        status text NOT NULL,
        customer_lc text,
        latest_step_at bigint,
        delivery_status text,
        carrier text,
        doc jsonb NOT NULL,
        PRIMARY KEY (generation, order_id)
    );
    CREATE INDEX shop_orders_by_time ON shop_orders (generation, created_at DESC, order_id DESC)
        WHERE created_at IS NOT NULL;
    CREATE INDEX shop_orders_by_delivery ON shop_orders (generation, latest_step_at DESC, order_id DESC)
        WHERE latest_step_at IS NOT NULL;
    CREATE TABLE shop_payments (
        generation bigint NOT NULL,
        at bigint NOT NULL,
        event_id bytea NOT NULL,
        order_id text COLLATE "C" NOT NULL,
        status text NOT NULL,
        method text NOT NULL,
        doc jsonb NOT NULL,
        PRIMARY KEY (generation, at, event_id)
    );
    CREATE TABLE shop_minutes (
        generation bigint NOT NULL,
        minute bigint NOT NULL,
        doc jsonb NOT NULL,
        PRIMARY KEY (generation, minute)
    );
    CREATE TABLE shop_aggregates (
        generation bigint PRIMARY KEY,
        doc jsonb NOT NULL
    );
    CREATE TABLE shop_offsets (
        generation bigint NOT NULL,
        topic text NOT NULL,
        partition integer NOT NULL,
        next_offset bigint NOT NULL,
        PRIMARY KEY (generation, topic, partition)
    );
    "#,
    // 2: the notifier's notifications, one row per id, listed by time.
    r#"
    CREATE TABLE shop_notifications (
        generation bigint NOT NULL,
        notification_id text COLLATE "C" NOT NULL,
        at bigint NOT NULL,
        severity text NOT NULL,
        doc jsonb NOT NULL,
        PRIMARY KEY (generation, notification_id)
    );
    CREATE INDEX shop_notifications_by_time
        ON shop_notifications (generation, at DESC, notification_id DESC);
    "#,
];

/// The tables whose rows belong to a generation.
const GENERATION_TABLES: [&str; 6] = [
    "shop_orders",
    "shop_payments",
    "shop_notifications",
    "shop_minutes",
    "shop_aggregates",
    "shop_offsets",
];

/// Open a connection; its driver task runs until the connection closes.
async fn connect(config: &Config) -> Result<Client, ModelError> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "read model database connection closed");
        }
    });
    Ok(client)
}

/// The shared database.
pub(crate) struct PgDatabase {
    /// Where it is.
    config: Config,
    /// The connection for reads (queries are pipelined on it).
    reader: Mutex<Option<Arc<Client>>>,
    /// The connection for transactions, one at a time.
    writer: Mutex<Option<Client>>,
    /// The shop's id in this database (names the shared projector group).
    pub(crate) shop_id: String,
}

/// A `bigint` for an index or position (clamped like the sled keys are).
fn at(value: i64) -> i64 {
    value.max(0)
}

impl PgDatabase {
    /// Connect to `url`, migrate the schema, and drop generations older
    /// than the current one (left by a replay that stopped after its swap).
    pub(crate) async fn open(url: &str) -> Result<Arc<PgDatabase>, ModelError> {
        let config = Config::from_str(url)?;
        let mut client = connect(&config).await?;
        migrate(&mut client).await?;
        let row = client
            .query_one(
                "SELECT generation, shop_id FROM shop_meta WHERE id = 1",
                &[],
            )
            .await?;
        let generation: i64 = row.get(0);
        let shop_id: String = row.get(1);
        for table in GENERATION_TABLES {
            client
                .execute(
                    &format!("DELETE FROM {table} WHERE generation < $1"),
                    &[&generation],
                )
                .await?;
        }
        Ok(Arc::new(PgDatabase {
            config,
            reader: Mutex::new(None),
            writer: Mutex::new(Some(client)),
            shop_id,
        }))
    }

    /// The read connection (reopened if it closed).
    async fn reader(&self) -> Result<Arc<Client>, ModelError> {
        let mut slot = self.reader.lock().await;
        if let Some(client) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(client));
        }
        let client = Arc::new(connect(&self.config).await?);
        *slot = Some(Arc::clone(&client));
        Ok(client)
    }

    /// Run `f` in one transaction on the write connection.
    async fn in_transaction<T>(
        &self,
        f: impl for<'t> FnOnce(
            &'t Transaction<'t>,
        ) -> futures::future::BoxFuture<'t, Result<T, ModelError>>,
    ) -> Result<T, ModelError> {
        let mut slot = self.writer.lock().await;
        if slot.as_ref().is_none_or(|c| c.is_closed()) {
            *slot = Some(connect(&self.config).await?);
        }
        let Some(client) = slot.as_mut() else {
            unreachable!("the write connection was just opened")
        };
        let tx = client.transaction().await?;
        let value = f(&tx).await?;
        tx.commit().await?;
        Ok(value)
    }

    /// The current generation.
    pub(crate) async fn current_generation(&self) -> Result<u64, ModelError> {
        let row = self
            .reader()
            .await?
            .query_one("SELECT generation FROM shop_meta WHERE id = 1", &[])
            .await?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    /// The model of generation `generation`.
    pub(crate) fn model(self: &Arc<Self>, generation: u64) -> Model {
        Model {
            store: Arc::new(PgModel {
                db: Arc::clone(self),
                generation: generation as i64,
            }),
            generation,
        }
    }

    /// A new, empty generation (numbers come from a sequence, so two
    /// replays never share one).
    pub(crate) async fn fresh_generation(self: &Arc<Self>) -> Result<Model, ModelError> {
        let row = self
            .reader()
            .await?
            .query_one("SELECT nextval('shop_generation_seq')", &[])
            .await?;
        Ok(self.model(row.get::<_, i64>(0) as u64))
    }

    /// Make `model` the current generation, unless a newer one already is.
    pub(crate) async fn install(&self, model: &Model) -> Result<(), ModelError> {
        let generation = model.generation as i64;
        self.in_transaction(|tx| {
            Box::pin(async move {
                let row = tx
                    .query_one(
                        "SELECT generation FROM shop_meta WHERE id = 1 FOR UPDATE",
                        &[],
                    )
                    .await?;
                let current: i64 = row.get(0);
                if current >= generation {
                    return Err(ModelError::Stale(generation as u64));
                }
                tx.execute(
                    "UPDATE shop_meta SET generation = $1 WHERE id = 1",
                    &[&generation],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// Delete every row of `model`'s generation.
    pub(crate) async fn discard(&self, model: &Model) -> Result<(), ModelError> {
        let generation = model.generation as i64;
        self.in_transaction(|tx| {
            Box::pin(async move {
                for table in GENERATION_TABLES {
                    tx.execute(
                        &format!("DELETE FROM {table} WHERE generation = $1"),
                        &[&generation],
                    )
                    .await?;
                }
                Ok(())
            })
        })
        .await
    }
}

/// Bring the schema to the latest version, once, whoever else starts now.
async fn migrate(client: &mut Client) -> Result<(), ModelError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS shop_schema_version (version integer NOT NULL)")
        .await?;
    let row = tx
        .query_one(
            "SELECT COALESCE(max(version), 0) FROM shop_schema_version",
            &[],
        )
        .await?;
    let version: i32 = row.get(0);
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let target = i as i32 + 1;
        if target <= version {
            continue;
        }
        tracing::info!(version = target, "migrating the read model database");
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO shop_schema_version (version) VALUES ($1)",
            &[&target],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// One generation in the database.
struct PgModel {
    db: Arc<PgDatabase>,
    generation: i64,
}

fn decode_text<T: for<'de> serde::Deserialize<'de>>(
    what: &str,
    text: &str,
) -> Result<T, ModelError> {
    decode(what.as_bytes(), text.as_bytes())
}

fn encode_text<T: serde::Serialize>(value: &T) -> String {
    String::from_utf8(encode(value)).unwrap_or_default()
}

/// Apply `records` to generation `generation` in `tx`.
async fn apply_in(
    tx: &Transaction<'_>,
    generation: i64,
    records: &[SourceRecord],
) -> Result<Outcome, ModelError> {
    let row = tx
        .query_one(
            "SELECT generation FROM shop_meta WHERE id = 1 FOR SHARE",
            &[],
        )
        .await?;
    if row.get::<_, i64>(0) > generation {
        return Err(ModelError::Stale(generation as u64));
    }
    let parsed = rule::parse(records);
    let ids = rule::order_ids(&parsed);
    tx.execute(
        "INSERT INTO shop_aggregates (generation, doc) VALUES ($1, '{}'::jsonb) \
         ON CONFLICT (generation) DO NOTHING",
        &[&generation],
    )
    .await?;
    let row = tx
        .query_one(
            "SELECT doc::text FROM shop_aggregates WHERE generation = $1 FOR UPDATE",
            &[&generation],
        )
        .await?;
    let text: String = row.get(0);
    let mut stored = rule::Stored::default();
    if text != "{}" {
        stored.aggregates = decode_text("aggregates", &text)?;
    }
    for row in tx
        .query(
            "SELECT order_id, doc::text FROM shop_orders \
             WHERE generation = $1 AND order_id = ANY($2) FOR UPDATE",
            &[&generation, &ids],
        )
        .await?
    {
        let id: String = row.get(0);
        let doc: String = row.get(1);
        let order = decode_text::<OrderRecord>(&id, &doc)?;
        stored.orders.insert(id, order);
    }
    for row in tx
        .query(
            "SELECT topic, partition, next_offset FROM shop_offsets WHERE generation = $1",
            &[&generation],
        )
        .await?
    {
        stored.offsets.insert((row.get(0), row.get(1)), row.get(2));
    }
    let notification_ids = rule::notification_ids(&parsed);
    if !notification_ids.is_empty() {
        for row in tx
            .query(
                "SELECT notification_id FROM shop_notifications \
                 WHERE generation = $1 AND notification_id = ANY($2)",
                &[&generation, &notification_ids],
            )
            .await?
        {
            stored.notifications.insert(row.get::<_, String>(0));
        }
    }
    let outcome = rule::project(&parsed, stored);
    write(tx, generation, &outcome).await?;
    Ok(outcome)
}

/// Write a batch's outcome in its transaction.
async fn write(tx: &Transaction<'_>, generation: i64, outcome: &Outcome) -> Result<(), ModelError> {
    if !outcome.orders.is_empty() {
        let mut ids = Vec::new();
        let mut created = Vec::new();
        let mut status = Vec::new();
        let mut customer = Vec::new();
        let mut latest = Vec::new();
        let mut delivery = Vec::new();
        let mut carrier = Vec::new();
        let mut docs = Vec::new();
        for (id, order) in &outcome.orders {
            ids.push(id.clone());
            created.push(order.created.as_ref().map(|c| at(c.at)));
            status.push(order.status().as_str().to_owned());
            customer.push(order.created.as_ref().map(|c| c.customer.to_lowercase()));
            latest.push(order.timeline.last().map(|s| at(s.at)));
            delivery.push(order.delivery_status().map(|s| s.as_str().to_owned()));
            carrier.push(order.carrier().map(str::to_owned));
            docs.push(encode_text(order));
        }
        let params: [&(dyn ToSql + Sync); 9] = [
            &generation,
            &ids,
            &created,
            &status,
            &customer,
            &latest,
            &delivery,
            &carrier,
            &docs,
        ];
        tx.execute(
            "INSERT INTO shop_orders (generation, order_id, created_at, status, customer_lc, \
                 latest_step_at, delivery_status, carrier, doc) \
             SELECT $1, o, c, s, cu, l, d, ca, doc::jsonb \
             FROM UNNEST($2::text[], $3::int8[], $4::text[], $5::text[], $6::int8[], \
                         $7::text[], $8::text[], $9::text[]) AS u(o, c, s, cu, l, d, ca, doc) \
             ON CONFLICT (generation, order_id) DO UPDATE SET \
                 created_at = EXCLUDED.created_at, status = EXCLUDED.status, \
                 customer_lc = EXCLUDED.customer_lc, latest_step_at = EXCLUDED.latest_step_at, \
                 delivery_status = EXCLUDED.delivery_status, carrier = EXCLUDED.carrier, \
                 doc = EXCLUDED.doc",
            &params,
        )
        .await?;
    }
    if !outcome.payments.is_empty() {
        let mut ats = Vec::new();
        let mut event_ids = Vec::new();
        let mut orders = Vec::new();
        let mut status = Vec::new();
        let mut method = Vec::new();
        let mut docs = Vec::new();
        for row in &outcome.payments {
            ats.push(at(row.entry.at));
            event_ids.push(row.entry.event_id.as_bytes().to_vec());
            orders.push(row.order_id.clone());
            status.push(row.entry.status.as_str().to_owned());
            method.push(row.entry.method.clone());
            docs.push(encode_text(row));
        }
        tx.execute(
            "INSERT INTO shop_payments (generation, at, event_id, order_id, status, method, doc) \
             SELECT $1, a, e, o, s, m, doc::jsonb \
             FROM UNNEST($2::int8[], $3::bytea[], $4::text[], $5::text[], $6::text[], $7::text[]) \
                 AS u(a, e, o, s, m, doc) \
             ON CONFLICT DO NOTHING",
            &[
                &generation,
                &ats,
                &event_ids,
                &orders,
                &status,
                &method,
                &docs,
            ],
        )
        .await?;
    }
    if !outcome.notifications.is_empty() {
        let mut ids = Vec::new();
        let mut ats = Vec::new();
        let mut severity = Vec::new();
        let mut docs = Vec::new();
        for row in &outcome.notifications {
            ids.push(row.notification_id.clone());
            ats.push(at(row.timestamp));
            severity.push(row.severity.clone());
            docs.push(encode_text(row));
        }
        tx.execute(
            "INSERT INTO shop_notifications (generation, notification_id, at, severity, doc) \
             SELECT $1, n, a, s, doc::jsonb \
             FROM UNNEST($2::text[], $3::int8[], $4::text[], $5::text[]) AS u(n, a, s, doc) \
             ON CONFLICT DO NOTHING",
            &[&generation, &ids, &ats, &severity, &docs],
        )
        .await?;
    }
    for (minute, delta) in &outcome.minutes {
        let minute = at(*minute);
        let existing = tx
            .query_opt(
                "SELECT doc::text FROM shop_minutes WHERE generation = $1 AND minute = $2 FOR UPDATE",
                &[&generation, &minute],
            )
            .await?;
        let mut bucket: MinuteBucket = match existing {
            Some(row) => decode_text("minute", &row.get::<_, String>(0))?,
            None => MinuteBucket::default(),
        };
        bucket.merge(delta);
        tx.execute(
            "INSERT INTO shop_minutes (generation, minute, doc) VALUES ($1, $2, $3::text::jsonb) \
             ON CONFLICT (generation, minute) DO UPDATE SET doc = EXCLUDED.doc",
            &[&generation, &minute, &encode_text(&bucket)],
        )
        .await?;
    }
    for ((topic, partition), next) in &outcome.offsets {
        tx.execute(
            "INSERT INTO shop_offsets (generation, topic, partition, next_offset) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (generation, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset",
            &[&generation, topic, partition, next],
        )
        .await?;
    }
    tx.execute(
        "UPDATE shop_aggregates SET doc = $2::text::jsonb WHERE generation = $1",
        &[&generation, &encode_text(&outcome.aggregates)],
    )
    .await?;
    Ok(())
}

/// A page from a count query and an items query that share their filter parameters.
async fn page_of<T>(
    client: &Client,
    count_sql: &str,
    items_sql: &str,
    params: &[&(dyn ToSql + Sync)],
    offset: usize,
    limit: usize,
    mut item: impl FnMut(&tokio_postgres::Row) -> Result<T, ModelError>,
) -> Result<Page<T>, ModelError> {
    let total: i64 = client.query_one(count_sql, params).await?.get(0);
    let offset = offset as i64;
    let limit = limit as i64;
    let mut all: Vec<&(dyn ToSql + Sync)> = params.to_vec();
    all.push(&offset);
    all.push(&limit);
    let rows = client.query(items_sql, &all).await?;
    let items = rows.iter().map(&mut item).collect::<Result<Vec<_>, _>>()?;
    Ok(Page {
        items,
        total: total as usize,
    })
}

fn order_of(row: &tokio_postgres::Row) -> Result<OrderRecord, ModelError> {
    decode_text("order", &row.get::<_, String>(0))
}

#[async_trait::async_trait]
impl ModelStore for PgModel {
    async fn apply(&self, records: Vec<SourceRecord>) -> Result<Applied, ModelError> {
        if records.is_empty() {
            return Ok(Applied {
                changes: Vec::new(),
                offsets: Offsets::new(),
            });
        }
        let generation = self.generation;
        let outcome = self
            .db
            .in_transaction(move |tx| {
                Box::pin(async move { apply_in(tx, generation, &records).await })
            })
            .await?;
        Ok(Applied {
            changes: outcome.changes,
            offsets: outcome.offsets,
        })
    }

    async fn stored_offsets(&self) -> Result<Offsets, ModelError> {
        let rows = self
            .db
            .reader()
            .await?
            .query(
                "SELECT topic, partition, next_offset FROM shop_offsets WHERE generation = $1",
                &[&self.generation],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| ((r.get(0), r.get(1)), r.get(2)))
            .collect())
    }

    async fn order(&self, order_id: &str) -> Result<Option<OrderRecord>, ModelError> {
        let row = self
            .db
            .reader()
            .await?
            .query_opt(
                "SELECT doc::text FROM shop_orders WHERE generation = $1 AND order_id = $2",
                &[&self.generation, &order_id],
            )
            .await?;
        row.as_ref().map(order_of).transpose()
    }

    async fn aggregates(&self) -> Result<Aggregates, ModelError> {
        let row = self
            .db
            .reader()
            .await?
            .query_opt(
                "SELECT doc::text FROM shop_aggregates WHERE generation = $1",
                &[&self.generation],
            )
            .await?;
        match row.map(|r| r.get::<_, String>(0)) {
            Some(text) if text != "{}" => decode_text("aggregates", &text),
            _ => Ok(Aggregates::default()),
        }
    }

    async fn minutes(&self, count: usize) -> Result<Vec<(i64, MinuteBucket)>, ModelError> {
        let rows = self
            .db
            .reader()
            .await?
            .query(
                "SELECT minute, doc::text FROM shop_minutes WHERE generation = $1 \
                 ORDER BY minute DESC LIMIT $2",
                &[&self.generation, &(count as i64)],
            )
            .await?;
        let mut out = rows
            .iter()
            .map(|r| Ok((r.get(0), decode_text("minute", &r.get::<_, String>(1))?)))
            .collect::<Result<Vec<_>, ModelError>>()?;
        out.reverse();
        Ok(out)
    }

    async fn orders(
        &self,
        filter: &OrderFilter,
        offset: usize,
        limit: usize,
    ) -> Result<Page<OrderRecord>, ModelError> {
        let status = filter.status.map(|s| s.as_str());
        let needle = filter.customer.as_ref().map(|c| c.to_lowercase());
        let filter_sql = "FROM shop_orders WHERE generation = $1 AND created_at IS NOT NULL \
             AND ($2::text IS NULL OR status = $2) \
             AND ($3::text IS NULL OR strpos(customer_lc, $3) > 0)";
        page_of(
            &*self.db.reader().await?,
            &format!("SELECT count(*) {filter_sql}"),
            &format!(
                "SELECT doc::text {filter_sql} ORDER BY created_at DESC, order_id DESC \
                 OFFSET $4 LIMIT $5"
            ),
            &[&self.generation, &status, &needle],
            offset,
            limit,
            order_of,
        )
        .await
    }

    async fn payments(
        &self,
        filter: &PaymentFilter,
        offset: usize,
        limit: usize,
    ) -> Result<Page<(String, PaymentEntry)>, ModelError> {
        let status = filter.status.map(|s| s.as_str());
        let filter_sql = "FROM shop_payments WHERE generation = $1 \
             AND ($2::text IS NULL OR status = $2) \
             AND ($3::text IS NULL OR lower(method) = lower($3)) \
             AND ($4::text IS NULL OR order_id = $4)";
        page_of(
            &*self.db.reader().await?,
            &format!("SELECT count(*) {filter_sql}"),
            &format!(
                "SELECT doc::text {filter_sql} ORDER BY at DESC, event_id DESC OFFSET $5 LIMIT $6"
            ),
            &[&self.generation, &status, &filter.method, &filter.order_id],
            offset,
            limit,
            |row| {
                let row: super::store::PaymentRow =
                    decode_text("payment", &row.get::<_, String>(0))?;
                Ok((row.order_id, row.entry))
            },
        )
        .await
    }

    async fn deliveries(
        &self,
        filter: &DeliveryFilter,
        offset: usize,
        limit: usize,
    ) -> Result<Page<OrderRecord>, ModelError> {
        let status = filter.status.map(|s| s.as_str());
        let filter_sql = "FROM shop_orders WHERE generation = $1 AND latest_step_at IS NOT NULL \
             AND ($2::text IS NULL OR delivery_status = $2) \
             AND ($3::text IS NULL OR lower(carrier) = lower($3)) \
             AND ($4::int8 IS NULL OR latest_step_at >= $4) \
             AND ($5::int8 IS NULL OR latest_step_at <= $5)";
        page_of(
            &*self.db.reader().await?,
            &format!("SELECT count(*) {filter_sql}"),
            &format!(
                "SELECT doc::text {filter_sql} ORDER BY latest_step_at DESC, order_id DESC \
                 OFFSET $6 LIMIT $7"
            ),
            &[
                &self.generation,
                &status,
                &filter.carrier,
                &filter.from,
                &filter.to,
            ],
            offset,
            limit,
            order_of,
        )
        .await
    }

    async fn notifications(
        &self,
        severity: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<Page<NotificationRow>, ModelError> {
        let filter_sql = "FROM shop_notifications WHERE generation = $1 \
             AND ($2::text IS NULL OR severity = $2)";
        page_of(
            &*self.db.reader().await?,
            &format!("SELECT count(*) {filter_sql}"),
            &format!(
                "SELECT doc::text {filter_sql} ORDER BY at DESC, notification_id DESC \
                 OFFSET $3 LIMIT $4"
            ),
            &[&self.generation, &severity],
            offset,
            limit,
            |row| decode_text("notification", &row.get::<_, String>(0)),
        )
        .await
    }
}
