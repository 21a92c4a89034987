//! `sluice groups list | describe | reset-offsets`: consumer-group
//! administration over the Kafka protocol (FindCoordinator, ListGroups,
//! DescribeGroups, ConsumerGroupDescribe for groups of the KIP-848
//! protocol, OffsetFetch, ListOffsets, OffsetCommit), so it works
//! against any Kafka-compatible cluster, not only Sluice.
//!
//! It talks to brokers through `crate::client` and never reaches into a
//! broker's internals. Must never: import anything but `crate::client`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use crate::client::{decode_assignment_by_topic, BrokerConnection, Client, ClientConfig};

/// The `groups` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum GroupsCommand {
    /// List the consumer groups of the cluster with their state.
    List {
        /// Only groups in these states (Empty, Stable, PreparingRebalance, ...).
        #[arg(long = "state")]
        states: Vec<String>,
        #[command(flatten)]
        target: Bootstrap,
    },
    /// Show a group's members, their assignments, and per partition the
    /// committed offset, the log end offset and the lag.
    Describe {
        /// The group id.
        group: String,
        #[command(flatten)]
        target: Bootstrap,
    },
    /// Move a group's committed offsets for one topic. The group must have no
    /// active members (stop its consumers first).
    #[command(group(clap::ArgGroup::new("position").required(true).multiple(false)))]
    ResetOffsets {
        /// The group id.
        group: String,
        /// The topic whose partitions are reset (all of its partitions).
        #[arg(long)]
        topic: String,
        /// To the log start offset of each partition.
        #[arg(long, group = "position")]
        to_earliest: bool,
        /// To the log end offset of each partition (skip everything there now).
        #[arg(long, group = "position")]
        to_latest: bool,
        /// To this offset (clamped to each partition's log start and end).
        #[arg(long, group = "position", value_name = "OFFSET")]
        to_offset: Option<i64>,
        /// To the first record at or after this time, e.g. 2026-01-01T00:00:00Z.
        #[arg(long, group = "position", value_name = "DATETIME")]
        to_datetime: Option<String>,
        /// Print the new offsets without committing them.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        target: Bootstrap,
    },
}

/// Where the cluster is.
#[derive(Debug, Clone, clap::Args)]
pub struct Bootstrap {
    /// Comma-separated `host:port` list of brokers to start from.
    #[arg(long, env = "SLUICE_BOOTSTRAP", default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
}

/// Where a reset moves each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResetTo {
    Earliest,
    Latest,
    Offset(i64),
    Timestamp(i64),
}

/// Run one `groups` subcommand, printing its result to stdout.
pub async fn run(cmd: GroupsCommand) -> anyhow::Result<()> {
    match cmd {
        GroupsCommand::List { states, target } => list(&connect(&target).await?, &states).await,
        GroupsCommand::Describe { group, target } => {
            describe(&connect(&target).await?, &group).await
        }
        GroupsCommand::ResetOffsets {
            group,
            topic,
            to_earliest,
            to_latest,
            to_offset,
            to_datetime,
            dry_run,
            target,
        } => {
            let to = match (to_earliest, to_latest, to_offset, to_datetime) {
                (true, _, _, _) => ResetTo::Earliest,
                (_, true, _, _) => ResetTo::Latest,
                (_, _, Some(offset), _) => ResetTo::Offset(offset),
                (_, _, _, Some(datetime)) => ResetTo::Timestamp(parse_datetime(&datetime)?),
                _ => bail!("give one of --to-earliest, --to-latest, --to-offset, --to-datetime"),
            };
            reset_offsets(&connect(&target).await?, &group, &topic, to, dry_run).await
        }
    }
}

async fn connect(target: &Bootstrap) -> anyhow::Result<Client> {
    Client::connect(ClientConfig::new(&target.bootstrap))
        .await
        .with_context(|| format!("cannot reach the cluster at {}", target.bootstrap))
}

fn error_name(code: i16) -> String {
    ResponseError::try_from_code(code)
        .map(|e| format!("{e:?}"))
        .unwrap_or_else(|| format!("error {code}"))
}

fn check(code: i16, what: &str) -> anyhow::Result<()> {
    if code == 0 {
        Ok(())
    } else {
        Err(anyhow!("{what}: {}", error_name(code)))
    }
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// A connection to the coordinator of `group` (FindCoordinator, retried
/// while the coordinator is loading or moving).
async fn coordinator(client: &Client, group: &str) -> anyhow::Result<BrokerConnection> {
    let mut last = String::new();
    for attempt in 0..10u64 {
        let conn = client.any_broker().await?;
        // v4 batches keys; one key needs no more than v3.
        let version = conn.version_for_capped::<FindCoordinatorRequest>(3)?;
        let req = FindCoordinatorRequest::default()
            .with_key(str_bytes(group))
            .with_key_type(0);
        let resp = conn.request_with_version(&req, version).await?;
        if resp.error_code == 0 {
            let addr = format!("{}:{}", resp.host, resp.port);
            return BrokerConnection::connect(&addr, &client.config().connection)
                .await
                .with_context(|| format!("cannot connect to the coordinator {addr}"));
        }
        last = error_name(resp.error_code);
        let retriable =
            ResponseError::try_from_code(resp.error_code).is_some_and(|e| e.is_retriable());
        if !retriable {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await;
    }
    bail!("no coordinator for group {group}: {last}")
}

async fn list(client: &Client, states: &[String]) -> anyhow::Result<()> {
    let mut rows: BTreeMap<String, (String, String, String)> = BTreeMap::new();
    for broker in client.brokers() {
        let conn = client.broker(broker.node_id).await?;
        let version = conn.version_for::<ListGroupsRequest>()?;
        if !states.is_empty() && version < 4 {
            bail!(
                "broker {} cannot filter groups by state (ListGroups v{version})",
                broker.node_id
            );
        }
        let req = ListGroupsRequest::default()
            .with_states_filter(states.iter().map(|s| str_bytes(s)).collect());
        let resp = conn.request_with_version(&req, version).await?;
        check(resp.error_code, "ListGroups")?;
        for g in resp.groups {
            // ListGroups v5 (KIP-848) names the group's type.
            let group_type = if version >= 5 {
                g.group_type.to_string()
            } else {
                "-".to_owned()
            };
            rows.insert(
                g.group_id.to_string(),
                (
                    group_type,
                    g.group_state.to_string(),
                    g.protocol_type.to_string(),
                ),
            );
        }
    }
    let mut table = vec![row(["GROUP", "STATE", "PROTOCOL-TYPE", "TYPE"])];
    for (group, (group_type, state, protocol_type)) in rows {
        let protocol_type = if protocol_type.is_empty() {
            "-".to_owned()
        } else {
            protocol_type
        };
        table.push(vec![group, state, protocol_type, group_type]);
    }
    print_table(&table);
    Ok(())
}

async fn describe_group(
    conn: &BrokerConnection,
    group: &str,
) -> anyhow::Result<describe_groups_response::DescribedGroup> {
    let version = conn.version_for::<DescribeGroupsRequest>()?;
    let req = DescribeGroupsRequest::default().with_groups(vec![GroupId(str_bytes(group))]);
    let resp = conn.request_with_version(&req, version).await?;
    let described = resp
        .groups
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("DescribeGroups answered without the group"))?;
    check(described.error_code, &format!("DescribeGroups {group}"))?;
    Ok(described)
}

/// Committed offsets of every partition of the group, by topic.
async fn committed_offsets(
    conn: &BrokerConnection,
    group: &str,
) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    // v8+ batches groups; one group needs no more than v7.
    let version = conn.version_for_capped::<OffsetFetchRequest>(7)?;
    if version < 2 {
        bail!("the broker cannot list all committed offsets (OffsetFetch v{version})");
    }
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(str_bytes(group)))
        .with_topics(None);
    let resp = conn.request_with_version(&req, version).await?;
    check(resp.error_code, &format!("OffsetFetch {group}"))?;
    let mut out = BTreeMap::new();
    for t in resp.topics {
        for p in t.partitions {
            check(
                p.error_code,
                &format!("OffsetFetch {group} {}-{}", t.name.0, p.partition_index),
            )?;
            if p.committed_offset >= 0 {
                out.insert((t.name.to_string(), p.partition_index), p.committed_offset);
            }
        }
    }
    Ok(out)
}

/// A group of the consumer protocol (KIP-848), if `group` is one: its
/// state, epochs and assignor, and each member's assignment by topic.
async fn describe_consumer_group(
    conn: &BrokerConnection,
    group: &str,
) -> anyhow::Result<Option<consumer_group_describe_response::DescribedGroup>> {
    let Ok(version) = conn.version_for::<ConsumerGroupDescribeRequest>() else {
        return Ok(None);
    };
    let req =
        ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(str_bytes(group))]);
    let resp = conn.request_with_version(&req, version).await?;
    Ok(resp.groups.into_iter().next().filter(|g| g.error_code == 0))
}

async fn describe(client: &Client, group: &str) -> anyhow::Result<()> {
    let conn = coordinator(client, group).await?;
    if let Some(g) = describe_consumer_group(&conn, group).await? {
        println!(
            "GROUP {group}  TYPE consumer  STATE {}  EPOCH {}  ASSIGNMENT-EPOCH {}  ASSIGNOR {}  MEMBERS {}",
            g.group_state,
            g.group_epoch,
            g.assignment_epoch,
            g.assignor_name,
            g.members.len()
        );
        println!();
        let mut owner: BTreeMap<(String, i32), String> = BTreeMap::new();
        let mut members = vec![row([
            "MEMBER-ID",
            "INSTANCE-ID",
            "CLIENT-ID",
            "HOST",
            "EPOCH",
            "ASSIGNMENT",
        ])];
        for m in &g.members {
            let mut shown = Vec::new();
            for tp in &m.assignment.topic_partitions {
                for p in &tp.partitions {
                    owner.insert((tp.topic_name.to_string(), *p), m.member_id.to_string());
                }
                let list: Vec<String> = tp.partitions.iter().map(|p| p.to_string()).collect();
                shown.push(format!("{}:{}", tp.topic_name.0, list.join(",")));
            }
            members.push(vec![
                m.member_id.to_string(),
                m.instance_id
                    .as_ref()
                    .map_or_else(|| "-".into(), |i| i.to_string()),
                m.client_id.to_string(),
                m.client_host.to_string(),
                m.member_epoch.to_string(),
                if shown.is_empty() {
                    "-".into()
                } else {
                    shown.join(" ")
                },
            ]);
        }
        print_members(&members);
        return print_lag(client, &conn, group, owner).await;
    }
    let described = describe_group(&conn, group).await?;
    if described.group_state.as_str() == "Dead" {
        bail!("group {group} does not exist");
    }
    println!(
        "GROUP {group}  TYPE classic  STATE {}  PROTOCOL {}/{}  MEMBERS {}",
        described.group_state,
        if described.protocol_type.is_empty() {
            "-"
        } else {
            described.protocol_type.as_str()
        },
        if described.protocol_data.is_empty() {
            "-"
        } else {
            described.protocol_data.as_str()
        },
        described.members.len()
    );
    println!();
    // Which member owns each partition.
    let mut owner: BTreeMap<(String, i32), String> = BTreeMap::new();
    let mut members = vec![row([
        "MEMBER-ID",
        "INSTANCE-ID",
        "CLIENT-ID",
        "HOST",
        "ASSIGNMENT",
    ])];
    for m in &described.members {
        let assigned = decode_assignment_by_topic(&m.member_assignment).unwrap_or_default();
        let mut shown = Vec::new();
        for (topic, partitions) in &assigned {
            for p in partitions {
                owner.insert((topic.clone(), *p), m.member_id.to_string());
            }
            let list: Vec<String> = partitions.iter().map(|p| p.to_string()).collect();
            shown.push(format!("{topic}:{}", list.join(",")));
        }
        members.push(vec![
            m.member_id.to_string(),
            m.group_instance_id
                .as_ref()
                .map(|i| i.to_string())
                .unwrap_or_else(|| "-".into()),
            m.client_id.to_string(),
            m.client_host.to_string(),
            if shown.is_empty() {
                "-".into()
            } else {
                shown.join(" ")
            },
        ]);
    }
    print_members(&members);
    print_lag(client, &conn, group, owner).await
}

/// The members table (its header row alone: none).
fn print_members(members: &[Vec<String>]) {
    if members.len() <= 1 {
        println!("(no active members)");
    } else {
        print_table(members);
    }
    println!();
}

/// Per partition: the committed offset, the log end offset, the lag and
/// the member that owns it.
async fn print_lag(
    client: &Client,
    conn: &BrokerConnection,
    group: &str,
    owner: BTreeMap<(String, i32), String>,
) -> anyhow::Result<()> {
    let committed = committed_offsets(conn, group).await?;
    let partitions: BTreeSet<(String, i32)> =
        committed.keys().chain(owner.keys()).cloned().collect();
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (topic, p) in &partitions {
        by_topic.entry(topic.clone()).or_default().push(*p);
    }
    let mut ends: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for (topic, parts) in &by_topic {
        match client.list_offsets(topic, parts, -1).await {
            Ok(found) => ends.extend(found.into_iter().map(|(p, o)| ((topic.clone(), p), o))),
            Err(e) => eprintln!("warning: no log end offsets for {topic}: {e}"),
        }
    }
    let mut table = vec![row([
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "MEMBER-ID",
    ])];
    for key in &partitions {
        let current = committed.get(key).copied();
        let end = ends.get(key).copied();
        let lag = match (current, end) {
            (Some(c), Some(e)) => (e - c).max(0).to_string(),
            (None, Some(_)) => "-".into(),
            _ => "-".into(),
        };
        table.push(vec![
            key.0.clone(),
            key.1.to_string(),
            current.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
            end.map(|e| e.to_string()).unwrap_or_else(|| "-".into()),
            lag,
            owner.get(key).cloned().unwrap_or_else(|| "-".into()),
        ]);
    }
    if partitions.is_empty() {
        println!("(no committed offsets)");
    } else {
        print_table(&table);
    }
    Ok(())
}

async fn reset_offsets(
    client: &Client,
    group: &str,
    topic: &str,
    to: ResetTo,
    dry_run: bool,
) -> anyhow::Result<()> {
    let conn = coordinator(client, group).await?;
    let described = describe_group(&conn, group).await?;
    let state = described.group_state.to_string();
    if state != "Empty" && state != "Dead" {
        bail!(
            "group {group} is {state} with {} member(s); offsets can only be reset while it has none (stop its consumers first)",
            described.members.len()
        );
    }
    let info = client
        .topic(topic)
        .await
        .with_context(|| format!("topic {topic}"))?;
    let partitions: Vec<i32> = (0..info.partition_count() as i32).collect();
    let earliest: BTreeMap<i32, i64> = client
        .list_offsets(topic, &partitions, -2)
        .await?
        .into_iter()
        .collect();
    let latest: BTreeMap<i32, i64> = client
        .list_offsets(topic, &partitions, -1)
        .await?
        .into_iter()
        .collect();
    let by_time: BTreeMap<i32, i64> = match to {
        ResetTo::Timestamp(ts) => client
            .list_offsets(topic, &partitions, ts)
            .await?
            .into_iter()
            .collect(),
        _ => BTreeMap::new(),
    };
    let mut targets = Vec::with_capacity(partitions.len());
    for p in &partitions {
        let (lo, hi) = (
            earliest.get(p).copied().unwrap_or(0),
            latest.get(p).copied().unwrap_or(0),
        );
        let offset = match to {
            ResetTo::Earliest => lo,
            ResetTo::Latest => hi,
            ResetTo::Offset(n) => n.clamp(lo, hi.max(lo)),
            // No record that recent: start at the end.
            ResetTo::Timestamp(_) => match by_time.get(p).copied() {
                Some(o) if o >= 0 => o,
                _ => hi,
            },
        };
        targets.push((*p, offset));
    }
    if !dry_run {
        client.commit_group_offsets(group, topic, &targets).await?;
    }
    let mut table = vec![row(["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"])];
    for (p, o) in &targets {
        table.push(vec![
            group.to_owned(),
            topic.to_owned(),
            p.to_string(),
            o.to_string(),
        ]);
    }
    print_table(&table);
    if dry_run {
        println!("(dry run: nothing committed)");
    }
    Ok(())
}

fn row<const N: usize>(cells: [&str; N]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

/// Print rows as left-aligned columns.
fn print_table(rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, cell)| format!("{cell:<width$}", width = widths[i]))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

/// Milliseconds since the epoch of an ISO-8601 date-time such as
/// `2026-01-01T00:00:00Z`, `2026-01-01T00:00:00.250+02:00` or
/// `2026-01-01T00:00:00` (UTC when no offset is given).
pub fn parse_datetime(s: &str) -> anyhow::Result<i64> {
    let bad = || anyhow!("cannot read {s:?} as a date-time like 2026-01-01T00:00:00Z");
    let (date, time) = s.split_once(['T', ' ']).ok_or_else(bad)?;
    let mut d = date.splitn(3, '-');
    let year: i64 = d.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let month: u32 = d.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let day: u32 = d.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let (clock, offset_minutes) = if let Some(c) = time.strip_suffix(['Z', 'z']) {
        (c, 0i64)
    } else if let Some(i) = time.rfind(['+', '-']) {
        let (c, zone) = time.split_at(i);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let zone = &zone[1..];
        let (h, m) = zone.split_once(':').unwrap_or((zone, "0"));
        let h: i64 = h.parse().map_err(|_| bad())?;
        let m: i64 = m.parse().map_err(|_| bad())?;
        (c, sign * (h * 60 + m))
    } else {
        (time, 0)
    };
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut t = hms.splitn(3, ':');
    let hour: i64 = t.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let minute: i64 = t.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let second: i64 = t
        .next()
        .map(|v| v.parse().ok())
        .unwrap_or(Some(0))
        .ok_or_else(bad)?;
    let millis: i64 = if fraction.is_empty() {
        0
    } else {
        let digits: String = fraction.chars().chain("000".chars()).take(3).collect();
        digits.parse().map_err(|_| bad())?
    };
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(bad());
    }
    let days = days_from_civil(year, month, day);
    Ok(
        (((days * 24 + hour) * 60 + minute) * 60 + second) * 1000 + millis
            - offset_minutes * 60_000,
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_parse_to_epoch_millis() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00Z").ok(), Some(0));
        assert_eq!(
            parse_datetime("2026-01-01T00:00:00Z").ok(),
            Some(1_767_225_600_000)
        );
        assert_eq!(
            parse_datetime("2026-01-01T00:00:00").ok(),
            Some(1_767_225_600_000)
        );
        assert_eq!(
            parse_datetime("2026-01-01T02:00:00.250+02:00").ok(),
            Some(1_767_225_600_250)
        );
        assert_eq!(
            parse_datetime("2024-02-29T12:30:15-01:30").ok(),
            Some(1_709_209_815_000 + 5_400_000)
        );
        assert!(parse_datetime("yesterday").is_err());
        assert!(parse_datetime("2026-13-01T00:00:00Z").is_err());
    }
}
