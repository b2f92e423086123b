//! The read routes: `/stats`, `/top`, `/counts`, `/rates`, `/sessions`, `/sessions/{user_id}`,
//! `/dead-letters`. Each answers from one snapshot, so every number in a response has the same
//! `as_of`.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::Json;
use emoflow_dataflow::document::{
    lifetime_top, ranked, whole_windows, SessionDoc, TopEntry, WindowDoc,
};
use emoflow_dataflow::snapshot::DEAD_LETTERS_KEPT;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{duration_param, ApiError};
use crate::snapshot::Snapshot;
use crate::state::AppState;

/// `GET /stats`: lifetime counts, top-K, the newest events.
#[utoipa::path(
    get,
    path = "/stats",
    tag = "views",
    summary = "The lifetime views: totals, counts, the ties-aware top-K, the newest events, rejections",
    responses((status = 200, description = "The lifetime views", body = crate::api_doc::StatsDoc))
)]
pub async fn stats(State(app): State<AppState>) -> Json<Value> {
    let snap = app.snapshot();
    let l = &snap.state.lifetime;
    Json(json!({
        "total": l.total,
        "counts": l.counts,
        "event_types": l.event_types,
        "top": lifetime_top(&snap.state),
        "recent": snap.state.recent,
        "rejected": l.rejected,
        "as_of": snap.state.as_of,
    }))
}

/// Parameters of `GET /top`.
#[derive(Debug, Deserialize)]
pub struct TopParams {
    k: Option<String>,
    window: Option<String>,
    last: Option<String>,
}

fn parse_k(k: Option<&str>) -> Result<usize, ApiError> {
    let Some(k) = k else { return Ok(3) };
    k.parse::<usize>()
        .ok()
        .filter(|k| (1..=1000).contains(k))
        .ok_or_else(|| {
            ApiError::bad_request(
                "k must be an integer in 1..=1000",
                json!({ "parameter": "k", "value": k }),
            )
        })
}

/// Every entry ranked at most `k`.
fn cut(entries: Vec<TopEntry>, k: usize) -> Vec<TopEntry> {
    entries.into_iter().take_while(|e| e.rank <= k).collect()
}

/// Checks a regrouping width: a multiple of the configured window, and no wider than the
/// windows held whole allow.
fn check_width(snap: &Snapshot, parameter: &str, width: i64) -> Result<(), ApiError> {
    let base = snap.cfg.window_ms;
    let widest = snap.cfg.widest_window_ms();
    if width % base != 0 {
        return Err(ApiError::bad_request(
            format!("{parameter} must be a multiple of the configured window ({base} ms)"),
            json!({ "parameter": parameter, "value_ms": width, "configured_ms": base }),
        ));
    }
    if width > widest {
        return Err(ApiError::bad_request(
            format!(
                "{parameter} may be at most {widest} ms: only that much of the newest windows is kept whole"
            ),
            json!({ "parameter": parameter, "value_ms": width, "max_ms": widest }),
        ));
    }
    Ok(())
}

/// The base windows regrouped into tumbling windows of `width` ms (a multiple of the
/// configured window), newest first: only groups whose every base window is held whole, so
/// none is partial.
fn regroup(snap: &Snapshot, width: i64) -> Result<Vec<WindowDoc>, ApiError> {
    check_width(snap, "window", width)?;
    let whole = whole_windows(&snap.state, &snap.cfg);
    let Some(newest) = whole.last().map(|w| w.start_ms) else {
        return Ok(Vec::new());
    };
    let held_after = newest - snap.cfg.widest_window_ms();
    let mut groups: BTreeMap<i64, WindowDoc> = BTreeMap::new();
    for w in whole {
        let start = w.start_ms - w.start_ms.rem_euclid(width);
        if start <= held_after {
            continue;
        }
        let g = groups.entry(start).or_insert_with(|| WindowDoc {
            start_ms: start,
            end_ms: start + width,
            total: 0,
            counts: BTreeMap::new(),
            top: Vec::new(),
        });
        add_window(g, w);
    }
    Ok(groups.into_values().rev().collect())
}

fn add_window(into: &mut WindowDoc, w: WindowDoc) {
    into.total += w.total;
    for (emoji, n) in w.counts {
        *into.counts.entry(emoji).or_default() += n;
    }
}

/// The sliding view: the newest base windows that cover the last `last` ms of event time, up
/// to the end of the newest window (`None` before any event).
pub(crate) fn sliding(snap: &Snapshot, last: i64) -> Result<Option<WindowDoc>, ApiError> {
    let base = snap.cfg.window_ms;
    // `last` rounded up to whole base windows, at least one.
    let covering = (last.div_euclid(base) + i64::from(last % base != 0)).max(1) * base;
    check_width(snap, "last", covering)?;
    let whole = whole_windows(&snap.state, &snap.cfg);
    let Some(end) = whole.last().map(|w| w.end_ms) else {
        return Ok(None);
    };
    let start = end - covering;
    let mut doc = WindowDoc {
        start_ms: start,
        end_ms: end,
        total: 0,
        counts: BTreeMap::new(),
        top: Vec::new(),
    };
    for w in whole.into_iter().filter(|w| w.start_ms >= start) {
        add_window(&mut doc, w);
    }
    Ok(Some(doc))
}

/// Which windowed view a request asks for.
enum Span {
    Lifetime,
    Tumbling(i64),
    Last(i64),
}

fn span(window: Option<&str>, last: Option<&str>) -> Result<Span, ApiError> {
    match (window, last) {
        (None, None) => Ok(Span::Lifetime),
        (Some(w), None) => Ok(Span::Tumbling(duration_param("window", w)?)),
        (None, Some(l)) => Ok(Span::Last(duration_param("last", l)?)),
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "give window (tumbling) or last (sliding), not both",
            json!({ "parameter": "last" }),
        )),
    }
}

fn ranked_counts<'a, S: AsRef<str> + 'a>(
    counts: impl IntoIterator<Item = (&'a S, &'a i64)>,
) -> Vec<TopEntry> {
    ranked(
        counts
            .into_iter()
            .map(|(e, n)| (e.as_ref().to_owned(), *n))
            .collect(),
    )
}

/// `GET /top?k=3&window=10s` or `?last=5m`: the ties-aware top-K, lifetime, of the newest
/// tumbling window of that width, or over the last stretch of event time.
#[utoipa::path(
    get,
    path = "/top",
    tag = "views",
    summary = "The ties-aware top-K: lifetime, of the newest tumbling window (`window`), or over the last stretch of event time (`last`)",
    params(("k" = Option<usize>, Query, description = "How many ranks (1..=1000, default 3); ties share a rank, so more may come"), ("window" = Option<String>, Query, description = "A tumbling window width, a multiple of `--window`: `10s`, `1m`"), ("last" = Option<String>, Query, description = "A sliding stretch of event time: `5m`")),
    responses((status = 200, description = "The ranking", body = crate::api_doc::TopDoc), (status = 400, description = "A parameter is wrong (named in `detail`)", body = crate::api_doc::ErrorBody))
)]
pub async fn top(
    State(app): State<AppState>,
    Query(p): Query<TopParams>,
) -> Result<Json<Value>, ApiError> {
    let k = parse_k(p.k.as_deref())?;
    let snap = app.snapshot();
    let as_of = snap.state.as_of;
    let span = span(p.window.as_deref(), p.last.as_deref())?;
    let group = match span {
        Span::Lifetime => {
            // The dataflow keeps the top-K of its configured K; a larger K ranks the counts.
            let entries = if k <= snap.cfg.top_k {
                lifetime_top(&snap.state)
            } else {
                ranked_counts(&snap.state.lifetime.counts)
            };
            return Ok(Json(
                json!({ "k": k, "top": cut(entries, k), "as_of": as_of }),
            ));
        }
        Span::Tumbling(width) => regroup(&snap, width)?.into_iter().next(),
        Span::Last(last) => sliding(&snap, last)?,
    };
    let (top, window) = match group {
        Some(g) => (
            cut(ranked_counts(&g.counts), k),
            json!({ "start_ms": g.start_ms, "end_ms": g.end_ms, "total": g.total }),
        ),
        None => (Vec::new(), Value::Null),
    };
    let mut answer = json!({ "k": k, "window": window, "top": top, "as_of": as_of });
    if let Span::Last(last) = span {
        answer["last_ms"] = json!(last);
    }
    Ok(Json(answer))
}

/// Parameters of `GET /counts`.
#[derive(Debug, Deserialize)]
pub struct CountsParams {
    window: Option<String>,
    last: Option<String>,
}

/// `GET /counts?window=10s` or `?last=5m`: per-emoji counts, lifetime, per tumbling window
/// (newest first), or over the last stretch of event time.
#[utoipa::path(
    get,
    path = "/counts",
    tag = "views",
    summary = "Per-emoji counts: lifetime, per tumbling window (`window`, newest first), or over the last stretch (`last`)",
    params(("window" = Option<String>, Query, description = "A tumbling window width, a multiple of `--window`"), ("last" = Option<String>, Query, description = "A sliding stretch of event time")),
    responses((status = 200, description = "The counts", body = crate::api_doc::CountsDoc), (status = 400, description = "A parameter is wrong (named in `detail`)", body = crate::api_doc::ErrorBody))
)]
pub async fn counts(
    State(app): State<AppState>,
    Query(p): Query<CountsParams>,
) -> Result<Json<Value>, ApiError> {
    let snap = app.snapshot();
    let as_of = snap.state.as_of;
    match span(p.window.as_deref(), p.last.as_deref())? {
        Span::Lifetime => Ok(Json(json!({
            "total": snap.state.lifetime.total,
            "counts": snap.state.lifetime.counts,
            "event_types": snap.state.lifetime.event_types,
            "as_of": as_of,
        }))),
        Span::Tumbling(width) => {
            let groups: Vec<Value> = regroup(&snap, width)?
                .into_iter()
                .map(|g| {
                    json!({
                        "start_ms": g.start_ms, "end_ms": g.end_ms,
                        "total": g.total, "counts": g.counts,
                    })
                })
                .collect();
            Ok(Json(
                json!({ "window_ms": width, "windows": groups, "as_of": as_of }),
            ))
        }
        Span::Last(last) => {
            let g = sliding(&snap, last)?;
            Ok(Json(json!({
                "last_ms": last,
                "start_ms": g.as_ref().map(|g| g.start_ms),
                "end_ms": g.as_ref().map(|g| g.end_ms),
                "total": g.as_ref().map_or(0, |g| g.total),
                "counts": g.map(|g| g.counts).unwrap_or_default(),
                "as_of": as_of,
            })))
        }
    }
}

/// Parameters of `GET /rates`.
#[derive(Debug, Deserialize)]
pub struct RatesParams {
    step: Option<String>,
    last: Option<String>,
}

/// `GET /rates?step=1s&last=5m`: accepted events per second over the last `last` of
/// processing time, in steps of `step` (whole seconds), oldest first.
#[utoipa::path(
    get,
    path = "/rates",
    tag = "views",
    summary = "Accepted events per second over the last stretch of processing time, for charts",
    params(("step" = Option<String>, Query, description = "Whole seconds per point (default 1s)"), ("last" = Option<String>, Query, description = "A multiple of step, at most 3600 steps (default 5m)")),
    responses((status = 200, description = "The series, oldest first", body = crate::api_doc::RatesDoc), (status = 400, description = "A parameter is wrong (named in `detail`)", body = crate::api_doc::ErrorBody))
)]
pub async fn rates(
    State(app): State<AppState>,
    Query(p): Query<RatesParams>,
) -> Result<Json<Value>, ApiError> {
    let step = duration_param("step", p.step.as_deref().unwrap_or("1s"))?;
    let last = duration_param("last", p.last.as_deref().unwrap_or("5m"))?;
    if step % 1000 != 0 || last % step != 0 || last / step > 3600 {
        return Err(ApiError::bad_request(
            "step must be whole seconds, last a multiple of step, and at most 3600 steps",
            json!({ "step_ms": step, "last_ms": last }),
        ));
    }
    let snap = app.snapshot();
    let points = rate_points(&snap, step / 1000, last / 1000);
    Ok(Json(
        json!({ "step_ms": step, "last_ms": last, "points": points, "as_of": snap.state.as_of }),
    ))
}

/// Accepted events per step of `step_s` seconds over the last `last_s` seconds of processing
/// time, oldest first (empty before any history).
pub(crate) fn rate_points(snap: &Snapshot, step_s: i64, last_s: i64) -> Vec<Value> {
    let history = &snap.history;
    let Some(&(end, _)) = history.back() else {
        return Vec::new();
    };
    // Total accepted by the end of second `s` (0 before the history starts).
    let total_at = |s: i64| -> i64 {
        let i = history.binary_search_by_key(&s, |(sec, _)| *sec);
        match i {
            Ok(i) => history[i].1,
            Err(0) => 0,
            Err(i) => history[i - 1].1,
        }
    };
    let first = end - last_s + 1;
    (0..last_s / step_s)
        .map(|i| {
            let start = first + i * step_s;
            let events = total_at(start + step_s - 1) - total_at(start - 1);
            json!({
                "start_ms": start * 1000,
                "events": events,
                "per_sec": events as f64 / step_s as f64,
            })
        })
        .collect()
}

/// `GET /sessions`: the summary over every user's retained sessions.
#[utoipa::path(
    get,
    path = "/sessions",
    tag = "views",
    summary = "The summary of every user's retained sessions",
    responses((status = 200, description = "The summary", body = crate::api_doc::SessionsDoc))
)]
pub async fn sessions(State(app): State<AppState>) -> Json<Value> {
    let snap = app.snapshot();
    let mut v = serde_json::to_value(snap.sessions_summary()).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("as_of".into(), snap.state.as_of.into());
    }
    Json(v)
}

/// `GET /sessions/{user_id}`: one user's sessions, newest first.
#[utoipa::path(
    get,
    path = "/sessions/{user_id}",
    tag = "views",
    summary = "One user's retained sessions, newest first",
    params(("user_id" = String, Path, description = "The user")),
    responses((status = 200, description = "The sessions", body = crate::api_doc::UserSessionsDoc), (status = 404, description = "The user was never seen", body = crate::api_doc::ErrorBody))
)]
pub async fn user_sessions(
    State(app): State<AppState>,
    Path(user_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let snap = app.snapshot();
    let sessions: Vec<SessionDoc> = snap
        .state
        .sessions_of(&user_id)
        .ok_or_else(|| ApiError::not_found(format!("user {user_id:?} was never seen")))?
        .into_iter()
        .map(SessionDoc::from)
        .collect();
    Ok(Json(
        json!({ "user_id": user_id, "sessions": sessions, "as_of": snap.state.as_of }),
    ))
}

/// Parameters of `GET /dead-letters`.
#[derive(Debug, Deserialize)]
pub struct LimitParams {
    limit: Option<String>,
}

/// `GET /dead-letters?limit=100`: rejected messages, newest first.
#[utoipa::path(
    get,
    path = "/dead-letters",
    tag = "views",
    summary = "Rejected messages with their reason, partition and offset, newest first",
    params(("limit" = Option<usize>, Query, description = "How many (default 100)")),
    responses((status = 200, description = "The dead letters", body = crate::api_doc::DeadLettersDoc), (status = 400, description = "A parameter is wrong (named in `detail`)", body = crate::api_doc::ErrorBody))
)]
pub async fn dead_letters(
    State(app): State<AppState>,
    Query(p): Query<LimitParams>,
) -> Result<Json<Value>, ApiError> {
    let limit = match p.limit.as_deref() {
        None => 100,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=DEAD_LETTERS_KEPT).contains(l))
            .ok_or_else(|| {
                ApiError::bad_request(
                    format!("limit must be an integer in 1..={DEAD_LETTERS_KEPT}"),
                    json!({ "parameter": "limit", "value": l }),
                )
            })?,
    };
    let snap = app.snapshot();
    let total: i64 = snap.state.lifetime.rejected.values().sum();
    let items = dead_letter_items(&snap, limit);
    Ok(Json(
        json!({ "total": total, "kept": snap.state.dead_letters.len(), "items": items, "as_of": snap.state.as_of }),
    ))
}

/// The newest `limit` dead letters, newest first.
pub(crate) fn dead_letter_items(snap: &Snapshot, limit: usize) -> Vec<Value> {
    snap.state
        .dead_letters
        .iter()
        .rev()
        .take(limit)
        .map(|d| {
            json!({
                "reason": d.reason, "detail": d.detail,
                "partition": d.partition, "offset": d.offset, "payload": d.payload,
            })
        })
        .collect()
}
