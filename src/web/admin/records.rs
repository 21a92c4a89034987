//! Reading a topic's records for the console, page by page, with the
//! filters applied on the server while it scans (`filter`), over the Kafka
//! protocol (Fetch and ListOffsets through `crate::client`).
//!
//! Newest first: each partition is read backwards in windows (a forward
//! Fetch over `[lo, hi)`, then the window below it), keeping only the newest
//! matches a page needs. From an offset or a timestamp: forward. Either
//! way a page costs at most `scan_budget` records read and `SCAN_DEADLINE`
//! of time, and keeps at most `limit` records (copied out of the fetch
//! buffers, so a kept record never pins a whole response). The answer's
//! cursor says where each partition continues, so the next page resumes
//! exactly where the scan stopped.
//!
//! Must never: hold more than one partition's fetch response at a time, or
//! keep a fetched buffer beyond the loop that decoded it.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use base64::Engine;
use kafka_protocol::records::Record;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::filter::RecordFilter;
use crate::client::{Client, ClientError, ConsumerConfig, PartitionFetcher, StartOffset};

/// Longest a page may scan before it answers with what it found.
const SCAN_DEADLINE: Duration = Duration::from_secs(10);
/// Most bytes of keys, values and headers one page keeps.
const MAX_PAGE_BYTES: usize = 8 << 20;
/// Records read per backward window at first (doubled per window).
const FIRST_WINDOW: i64 = 500;
/// Largest backward window.
const MAX_WINDOW: i64 = 50_000;

/// Which way a page reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// From the high watermark down.
    Newest,
    /// From a start position up.
    Oldest,
}

/// Where one page starts, per partition.
#[derive(Debug, Clone, Copy)]
pub enum Start {
    /// Newest: the high watermark. Oldest: the log start.
    Default,
    /// Oldest: this offset (clamped to the log). Newest: read below it.
    Offset(i64),
    /// Oldest: the first record at or after this time (ListOffsets).
    Timestamp(i64),
}

/// One page request.
#[derive(Debug)]
pub struct PageRequest {
    pub topic: String,
    /// None: every partition.
    pub partition: Option<i32>,
    pub order: Order,
    pub start: Start,
    /// Per partition, where the previous page stopped (wins over `start`).
    pub cursor: Option<BTreeMap<i32, i64>>,
    pub limit: usize,
    pub scan_budget: usize,
    pub filter: RecordFilter,
}

/// A record kept for the answer, owning its bytes.
#[derive(Debug, Clone)]
pub struct FoundRecord {
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl FoundRecord {
    fn from_record(partition: i32, r: &Record) -> Self {
        FoundRecord {
            partition,
            offset: r.offset,
            timestamp: r.timestamp,
            key: r.key.as_ref().map(|k| k.to_vec()),
            value: r.value.as_ref().map(|v| v.to_vec()),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_ref().map(|v| v.to_vec())))
                .collect(),
        }
    }

    fn size(&self) -> usize {
        self.key.as_ref().map_or(0, Vec::len)
            + self.value.as_ref().map_or(0, Vec::len)
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
                .sum::<usize>()
    }

    /// The JSON of one record: text when the bytes are UTF-8, else base64.
    pub fn to_json(&self) -> Value {
        json!({
            "partition": self.partition,
            "offset": self.offset,
            "timestamp": self.timestamp,
            "key": bytes_json(self.key.as_deref()),
            "value": bytes_json(self.value.as_deref()),
            "headers": self.headers.iter().map(|(k, v)| json!({"key": k, "value": bytes_json(v.as_deref())})).collect::<Vec<_>>(),
            "size": self.size(),
        })
    }
}

/// `{"text": ...}` for UTF-8, `{"base64": ...}` otherwise, null for none.
fn bytes_json(bytes: Option<&[u8]>) -> Value {
    match bytes {
        None => Value::Null,
        Some(b) => match std::str::from_utf8(b) {
            Ok(text) => json!({"text": text}),
            Err(_) => json!({"base64": base64::engine::general_purpose::STANDARD.encode(b)}),
        },
    }
}

/// What one partition's scan found.
struct PartitionScan {
    partition: i32,
    /// Where the page began in this partition.
    began: i64,
    /// Matches in reading order (newest first, or oldest first).
    kept: Vec<FoundRecord>,
    /// Where the next page continues if every kept record is shown.
    resume: i64,
    scanned: usize,
}

/// One page: records, per partition cursor, and what it cost.
#[derive(Debug)]
pub struct Page {
    pub records: Vec<FoundRecord>,
    pub cursor: BTreeMap<i32, i64>,
    /// True when a later page may find more (not at the log's end in the
    /// direction read).
    pub more: bool,
    pub scanned: usize,
    /// Per partition: log start and high watermark when the page was read.
    pub bounds: BTreeMap<i32, (i64, i64)>,
    pub elapsed_ms: u128,
}

/// Read one page of `request.topic`.
pub async fn read_page(client: &Client, request: &PageRequest) -> Result<Page, ClientError> {
    let began = Instant::now();
    let deadline = began + SCAN_DEADLINE;
    let info = client.topic(&request.topic).await?;
    let partitions: Vec<i32> = match request.partition {
        Some(p) => vec![p],
        None => info.partitions.iter().map(|p| p.partition).collect(),
    };
    let starts: BTreeMap<i32, i64> = client
        .list_offsets(&request.topic, &partitions, -2)
        .await?
        .into_iter()
        .collect();
    let ends: BTreeMap<i32, i64> = client
        .list_offsets(&request.topic, &partitions, -1)
        .await?
        .into_iter()
        .collect();
    let by_time: BTreeMap<i32, i64> = match (request.order, request.start, &request.cursor) {
        (Order::Oldest, Start::Timestamp(ts), None) => client
            .list_offsets(&request.topic, &partitions, ts)
            .await?
            .into_iter()
            .collect(),
        _ => BTreeMap::new(),
    };
    let budget = (request.scan_budget / partitions.len().max(1)).max(1);
    let mut scans = Vec::with_capacity(partitions.len());
    for &p in &partitions {
        let (lo, hi) = (
            starts.get(&p).copied().unwrap_or(0),
            ends.get(&p).copied().unwrap_or(0),
        );
        let from_cursor = request.cursor.as_ref().and_then(|c| c.get(&p)).copied();
        let scan = match request.order {
            Order::Newest => {
                let upper = from_cursor
                    .or(match request.start {
                        Start::Offset(o) => Some(o),
                        _ => None,
                    })
                    .unwrap_or(hi)
                    .clamp(lo, hi);
                scan_backward(client, request, p, lo, upper, budget, deadline).await?
            }
            Order::Oldest => {
                let from = from_cursor
                    .or(match request.start {
                        Start::Offset(o) => Some(o),
                        Start::Timestamp(_) => {
                            Some(by_time.get(&p).copied().filter(|o| *o >= 0).unwrap_or(hi))
                        }
                        Start::Default => None,
                    })
                    .unwrap_or(lo)
                    .clamp(lo, hi);
                scan_forward(client, request, p, from, hi, budget, deadline).await?
            }
        };
        scans.push(scan);
    }
    Ok(merge(request, scans, starts, ends, began))
}

/// The page from every partition's matches: ordered by time (then offset),
/// cut to `limit`, and each partition's cursor after what was shown.
fn merge(
    request: &PageRequest,
    scans: Vec<PartitionScan>,
    starts: BTreeMap<i32, i64>,
    ends: BTreeMap<i32, i64>,
    began: Instant,
) -> Page {
    let mut all: Vec<&FoundRecord> = scans.iter().flat_map(|s| s.kept.iter()).collect();
    match request.order {
        Order::Newest => all.sort_by(|a, b| {
            (b.timestamp, b.offset, b.partition).cmp(&(a.timestamp, a.offset, a.partition))
        }),
        Order::Oldest => all.sort_by(|a, b| {
            (a.timestamp, a.offset, a.partition).cmp(&(b.timestamp, b.offset, b.partition))
        }),
    }
    let mut shown: Vec<FoundRecord> = Vec::new();
    let mut bytes = 0;
    for r in all {
        if shown.len() >= request.limit || (bytes > MAX_PAGE_BYTES && !shown.is_empty()) {
            break;
        }
        bytes += r.size();
        shown.push(r.clone());
    }
    let mut cursor = BTreeMap::new();
    let mut more = false;
    let mut scanned = 0;
    for s in &scans {
        scanned += s.scanned;
        let mine: Vec<i64> = shown
            .iter()
            .filter(|r| r.partition == s.partition)
            .map(|r| r.offset)
            .collect();
        let position = if mine.len() == s.kept.len() {
            s.resume
        } else {
            match request.order {
                Order::Newest => mine.iter().min().copied().unwrap_or(s.began),
                Order::Oldest => mine.iter().max().map(|o| o + 1).unwrap_or(s.began),
            }
        };
        let (lo, hi) = (
            starts.get(&s.partition).copied().unwrap_or(0),
            ends.get(&s.partition).copied().unwrap_or(0),
        );
        more |= match request.order {
            Order::Newest => position > lo,
            Order::Oldest => position < hi,
        };
        cursor.insert(s.partition, position);
    }
    let bounds = starts
        .iter()
        .map(|(p, lo)| (*p, (*lo, ends.get(p).copied().unwrap_or(*lo))))
        .collect();
    Page {
        records: shown,
        cursor,
        more,
        scanned,
        bounds,
        elapsed_ms: began.elapsed().as_millis(),
    }
}

fn fetcher(client: &Client) -> PartitionFetcher {
    PartitionFetcher::new(
        client.clone(),
        ConsumerConfig {
            max_wait: Duration::from_millis(100),
            max_bytes: 2 << 20,
            partition_max_bytes: 1 << 20,
            ..ConsumerConfig::default()
        },
    )
}

/// Read `[from, to)` of one partition, calling `each` per record in offset
/// order until it returns false; the number of records read and where
/// reading stopped.
async fn read_range(
    client: &Client,
    topic: &str,
    partition: i32,
    from: i64,
    to: i64,
    deadline: Instant,
    mut each: impl FnMut(&Record) -> bool,
) -> Result<(usize, i64), ClientError> {
    let mut fetcher = fetcher(client);
    fetcher
        .assign(topic, &[partition], StartOffset::At(from))
        .await?;
    let mut read = 0;
    let mut position = from;
    let mut idle_rounds = 0;
    while position < to && Instant::now() < deadline {
        let batches = fetcher.poll().await?;
        let before = position;
        for batch in &batches {
            for r in &batch.records {
                if r.offset < position || r.offset >= to {
                    continue;
                }
                read += 1;
                position = r.offset + 1;
                if !each(r) {
                    return Ok((read, position));
                }
            }
        }
        // Offsets without records (compaction, control batches): follow the fetcher.
        let fetched_to = fetcher.position(topic, partition).unwrap_or(position);
        position = position.max(fetched_to.min(to));
        if position == before {
            idle_rounds += 1;
            if idle_rounds >= 3 {
                break;
            }
        } else {
            idle_rounds = 0;
        }
    }
    Ok((read, position.min(to)))
}

async fn scan_forward(
    client: &Client,
    request: &PageRequest,
    partition: i32,
    from: i64,
    to: i64,
    budget: usize,
    deadline: Instant,
) -> Result<PartitionScan, ClientError> {
    let mut kept = Vec::new();
    let mut kept_bytes = 0;
    let mut left = budget;
    let (scanned, stopped) =
        read_range(client, &request.topic, partition, from, to, deadline, |r| {
            left -= 1;
            if request.filter.matches(r) {
                let found = FoundRecord::from_record(partition, r);
                kept_bytes += found.size();
                kept.push(found);
            }
            kept.len() < request.limit && kept_bytes <= MAX_PAGE_BYTES && left > 0
        })
        .await?;
    Ok(PartitionScan {
        partition,
        began: from,
        kept,
        resume: stopped,
        scanned,
    })
}

async fn scan_backward(
    client: &Client,
    request: &PageRequest,
    partition: i32,
    lo: i64,
    upper: i64,
    budget: usize,
    deadline: Instant,
) -> Result<PartitionScan, ClientError> {
    let mut kept: Vec<FoundRecord> = Vec::new();
    let mut kept_bytes = 0;
    let mut scanned = 0;
    let mut hi = upper;
    let mut window = FIRST_WINDOW.max(request.limit as i64 * 4);
    let mut resume = upper;
    while hi > lo && kept.len() < request.limit && scanned < budget && Instant::now() < deadline {
        let from = (hi - window).max(lo).max(hi - (budget - scanned) as i64);
        let need = request.limit - kept.len();
        // The newest `need` matches of this window, oldest first.
        let mut newest: VecDeque<FoundRecord> = VecDeque::new();
        let mut window_bytes = 0;
        let (read, stopped) =
            read_range(client, &request.topic, partition, from, hi, deadline, |r| {
                if request.filter.matches(r) {
                    let found = FoundRecord::from_record(partition, r);
                    window_bytes += found.size();
                    newest.push_back(found);
                    while newest.len() > need
                        || (window_bytes + kept_bytes > MAX_PAGE_BYTES && newest.len() > 1)
                    {
                        if let Some(dropped) = newest.pop_front() {
                            window_bytes -= dropped.size();
                        }
                    }
                }
                true
            })
            .await?;
        scanned += read;
        if stopped < hi {
            // The deadline cut the window short: nothing below `from` was read,
            // and the part of the window above `stopped` was not either.
            resume = hi;
            break;
        }
        let filled = newest.len() == need || window_bytes + kept_bytes > MAX_PAGE_BYTES;
        kept_bytes += window_bytes;
        kept.extend(newest.into_iter().rev());
        if filled {
            resume = kept.last().map_or(from, |r| r.offset);
            break;
        }
        resume = from;
        hi = from;
        window = (window * 2).min(MAX_WINDOW);
    }
    Ok(PartitionScan {
        partition,
        began: upper,
        kept,
        resume,
        scanned,
    })
}

/// `0:12,1:40` into a cursor.
pub fn parse_cursor(text: &str) -> Option<BTreeMap<i32, i64>> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(|pair| {
            let (p, o) = pair.split_once(':')?;
            Some((p.trim().parse().ok()?, o.trim().parse().ok()?))
        })
        .collect()
}

/// A cursor as `0:12,1:40`.
pub fn format_cursor(cursor: &BTreeMap<i32, i64>) -> String {
    cursor
        .iter()
        .map(|(p, o)| format!("{p}:{o}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_ones_are_refused() {
        let c: BTreeMap<i32, i64> = [(0, 12), (3, 40)].into_iter().collect();
        assert_eq!(parse_cursor(&format_cursor(&c)), Some(c));
        assert_eq!(parse_cursor("0:x"), None);
        assert_eq!(parse_cursor("7"), None);
    }
}
