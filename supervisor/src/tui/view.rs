//! Drawing a [`Model`] with ratatui widgets: a header, the link state, the worker table, the
//! queues with sparklines, the adaptive controller's decisions, recent events and a status
//! line. Pure: the same model and frame size always give the same buffer (which the snapshot
//! test relies on).
//!
//! The adaptive panel gets at most [`ADAPTIVE_ROWS`] decision lines, and only what the terminal
//! can spare while the events keep three lines: it shrinks on a short terminal and disappears
//! on a very short one.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, Cell, HighlightSpacing, Paragraph, Row, Sparkline, Table, TableState,
};
use ratatui::Frame;

use super::model::{Controller, DecisionRow, KindRow, Link, Model, SortKey, WorkerRow};
use super::POLL_INTERVAL;

/// Key help shown at the right of the status line.
const KEYS: &str = " s sort · ↑↓/jk select · d drain · r restart · q quit ";

/// Width of the text part of a queue line (before the sparklines).
const QUEUE_TEXT: u16 = 78;

/// Most decision lines the adaptive panel shows (newest first).
pub const ADAPTIVE_ROWS: usize = 6;

/// Widest summary column of the adaptive panel; longer summaries are cut.
const SUMMARY_MAX: usize = 40;

/// Draws the whole screen.
pub fn render(frame: &mut Frame<'_>, model: &Model) {
    let area = frame.area();
    let workers_h = u16::try_from(model.rows().len().max(1) + 3).unwrap_or(u16::MAX);
    let queues_h = u16::try_from(model.kinds().len().max(1) + 3).unwrap_or(u16::MAX);
    // The adaptive panel takes what is left once the events have three lines.
    let spare = area
        .height
        .saturating_sub(3 + workers_h.saturating_add(queues_h).saturating_add(3));
    let adaptive_h = match adaptive_lines(model).saturating_add(2).min(spare) {
        h if h < 3 => 0,
        h => h,
    };
    let [head, link, workers, queues, adaptive, events, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(workers_h),
        Constraint::Length(queues_h),
        Constraint::Length(adaptive_h),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(area);
    frame.render_widget(header_line(model), head);
    frame.render_widget(link_line(model), link);
    render_workers(frame, model, workers);
    render_queues(frame, model, queues);
    if adaptive_h > 0 {
        render_adaptive(frame, model, adaptive);
    }
    render_events(frame, model, events);
    render_status(frame, model, status);
}

fn header_line(model: &Model) -> Line<'static> {
    let mut spans = vec![Span::styled(
        " amp top ",
        Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED),
    )];
    match model.header() {
        None => spans.push(Span::raw(format!(
            " waiting for ampd at {}",
            model.socket()
        ))),
        Some(h) => {
            let t = &h.tasks;
            spans.push(Span::raw(format!(
                " ampd pid {} · up {} · {} workers · tasks: {} queued, {} in flight, {} retrying, {} dead-lettered, {} done",
                h.pid,
                uptime(h.uptime_s),
                model.rows().len(),
                t.queued,
                t.in_flight,
                t.waiting_retry,
                t.dead_lettered,
                t.done
            )));
            if h.shutting_down {
                spans.push(Span::styled(
                    " (shutting down)",
                    Style::new().fg(Color::Yellow),
                ));
            }
        }
    }
    Line::from(spans)
}

fn link_line(model: &Model) -> Line<'static> {
    let every = POLL_INTERVAL.as_secs_f64();
    match model.link() {
        Link::Connecting => Line::from(format!(" … connecting to {}", model.socket())),
        Link::Up => Line::from(vec![
            Span::styled(" ● ", Style::new().fg(Color::Green)),
            Span::raw(format!(
                "connected to {} · refresh every {every}s",
                model.socket()
            )),
        ]),
        Link::Down { error, stale_for } => {
            let age = stale_for.map_or_else(
                || "no figures yet".to_owned(),
                |d| format!("figures below are {:.1}s old", d.as_secs_f64()),
            );
            Line::from(Span::styled(
                format!(" ✖ ampd unreachable, retrying every {every}s ({age}): {error}"),
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            ))
        }
    }
}

/// Column of the worker table each sort key sorts by.
fn sort_column(k: SortKey) -> usize {
    match k {
        SortKey::Name => 0,
        SortKey::State => 1,
        SortKey::Restarts => 3,
        SortKey::InFlight => 4,
        SortKey::Throughput => 5,
        SortKey::P99 => 6,
        SortKey::Cpu => 7,
        SortKey::Rss => 8,
    }
}

fn render_workers(frame: &mut Frame<'_>, model: &Model, area: Rect) {
    const TITLES: [&str; 10] = [
        "NAME",
        "STATE",
        "PID",
        "RESTARTS",
        "IN-FL",
        "TASKS/S",
        "P99 ms",
        "CPU%",
        "RSS MiB",
        "LAST EXIT",
    ];
    let sorted = sort_column(model.sort());
    let arrow = if model.sort().ascending() {
        "▲"
    } else {
        "▼"
    };
    let header = Row::new(TITLES.iter().enumerate().map(|(i, t)| {
        let t = if i == sorted {
            format!("{t}{arrow}")
        } else {
            (*t).to_owned()
        };
        if i < 2 || i == TITLES.len() - 1 {
            Cell::from(t)
        } else {
            Cell::from(Line::from(t).right_aligned())
        }
    }))
    .style(Style::new().add_modifier(Modifier::BOLD));
    let rows = model.rows().iter().map(worker_row);
    // The name column fits the longest name (and its header with the sort arrow).
    let name_w = model
        .rows()
        .iter()
        .map(|r| r.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(TITLES[0].len() + 1);
    let widths = [
        Constraint::Length(u16::try_from(name_w).unwrap_or(u16::MAX)),
        Constraint::Length(10),
        Constraint::Length(8),
        Constraint::Length(9),
        Constraint::Length(6),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(7),
        Constraint::Length(9),
        Constraint::Fill(1),
    ];
    let title = if model.rows().is_empty() {
        " workers: none "
    } else {
        " workers "
    };
    let table = Table::new(rows, widths)
        .header(header)
        .block(Block::bordered().title(title))
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol("> ")
        .highlight_spacing(HighlightSpacing::Always);
    let mut state = TableState::new().with_selected(model.selected_index());
    frame.render_stateful_widget(table, area, &mut state);
}

fn worker_row(w: &WorkerRow) -> Row<'static> {
    let state_style = match w.state.as_str() {
        "ready" => Style::new().fg(Color::Green),
        "failed" | "backoff" => Style::new().fg(Color::Red),
        "stopping" | "draining" | "stopped" => Style::new().fg(Color::Yellow),
        _ => Style::new(),
    };
    let right = |s: String| Cell::from(Line::from(s).right_aligned());
    Row::new(vec![
        Cell::from(w.name.clone()),
        Cell::from(Span::styled(w.state.clone(), state_style)),
        right(opt(w.pid, |p| p.to_string())),
        right(w.restarts.to_string()),
        right(w.in_flight.to_string()),
        right(opt(w.throughput, |t| format!("{t:.1}"))),
        right(opt(w.p99_ms, |p| format!("{p:.3}"))),
        right(opt(w.cpu_pct, |c| format!("{c:.1}"))),
        right(opt(w.rss_bytes, |b| {
            format!("{:.1}", b as f64 / 1_048_576.0)
        })),
        Cell::from(w.last_exit.clone().unwrap_or_default()),
    ])
}

fn render_queues(frame: &mut Frame<'_>, model: &Model, area: Rect) {
    let block = Block::bordered().title(" queues ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.height == 0 {
        return;
    }
    let lines =
        Layout::vertical(vec![Constraint::Length(1); usize::from(inner.height)]).split(inner);
    let secs = (super::model::HISTORY as f64 * POLL_INTERVAL.as_secs_f64()).round();
    let head = format!(
        "{:<10} {:<12} {:>6} {:>5} {:>5} {:>10}  {:<22}",
        "KIND", "POLICY", "QUEUED", "IN-FL", "REJ", "DISPATCHED", "BY CLASS"
    );
    let [text, tput, _gap, lat] = queue_columns(lines[0]);
    frame.render_widget(Line::from(head).bold(), text);
    frame.render_widget(Line::from(format!("tasks/s, last {secs}s")).bold(), tput);
    frame.render_widget(Line::from(format!("p99 ms, last {secs}s")).bold(), lat);
    if model.kinds().is_empty() {
        if let Some(l) = lines.get(1) {
            frame.render_widget(Line::from("(no task kinds)"), *l);
        }
        return;
    }
    for (k, area) in model.kinds().iter().zip(lines.iter().skip(1)) {
        render_kind(frame, k, *area);
    }
}

/// Splits a queue line: text, throughput (sparkline + value), a gap, latency (sparkline + value).
fn queue_columns(area: Rect) -> [Rect; 4] {
    Layout::horizontal([
        Constraint::Length(QUEUE_TEXT),
        Constraint::Fill(1),
        Constraint::Length(1),
        Constraint::Fill(1),
    ])
    .areas(area)
}

fn render_kind(frame: &mut Frame<'_>, k: &KindRow, area: Rect) {
    let classes: Vec<String> = k.depth.iter().map(|(c, n)| format!("{c}={n}")).collect();
    let text = format!(
        "{:<10} {:<12} {:>6} {:>5} {:>5} {:>10}  {:<22}",
        k.kind,
        k.policy,
        k.queued(),
        k.in_flight,
        k.rejected,
        k.dispatched,
        classes.join(" ")
    );
    let [text_area, tput, _gap, lat] = queue_columns(area);
    frame.render_widget(Line::from(text), text_area);
    let tput_value = opt(k.throughput, |t| format!("{t:>6.1}/s"));
    let lat_value = opt(k.p99_ms, |p| format!("{p:>7.3}ms"));
    spark(
        frame,
        tput,
        &k.throughput_hist,
        10.0,
        &tput_value,
        Color::Green,
    );
    spark(frame, lat, &k.p99_hist, 1000.0, &lat_value, Color::Yellow);
}

/// A sparkline of the newest samples that fit, followed by the current value.
fn spark(
    frame: &mut Frame<'_>,
    area: Rect,
    hist: &std::collections::VecDeque<f64>,
    scale: f64,
    value: &str,
    color: Color,
) {
    let value_w = u16::try_from(value.chars().count() + 1).unwrap_or(u16::MAX);
    let [bars, val] =
        Layout::horizontal([Constraint::Fill(1), Constraint::Length(value_w)]).areas(area);
    let n = usize::from(bars.width);
    let data: Vec<u64> = hist
        .iter()
        .skip(hist.len().saturating_sub(n))
        .map(|v| (v * scale).round().max(0.0) as u64)
        .collect();
    frame.render_widget(
        Sparkline::default()
            .data(data)
            .style(Style::new().fg(color)),
        bars,
    );
    frame.render_widget(Line::from(format!(" {value}")), val);
}

/// Lines the adaptive panel would like (inside its border).
fn adaptive_lines(model: &Model) -> u16 {
    let notice = usize::from(!matches!(model.controller(), Controller::Available { .. }));
    let decisions = model.decisions().len().min(ADAPTIVE_ROWS);
    u16::try_from((notice + decisions).max(1)).unwrap_or(u16::MAX)
}

fn render_adaptive(frame: &mut Frame<'_>, model: &Model, area: Rect) {
    let decisions = model.decisions();
    let proposed = decisions.iter().filter(|d| d.is_proposed()).count();
    let mut title = vec![Span::raw(" adaptive ")];
    if proposed > 0 {
        title.push(Span::styled(
            format!("· {proposed} proposed: ampctl tune apply ID "),
            Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
        ));
    }
    if let Controller::Available { modes } = model.controller() {
        let modes: Vec<String> = modes.iter().map(|(k, m)| format!("{k}: {m}")).collect();
        let modes = if modes.is_empty() {
            "no kinds".to_owned()
        } else {
            modes.join(", ")
        };
        title.push(Span::raw(format!("— {modes} ")));
    }
    let block = Block::bordered().title(Line::from(title));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let width = usize::from(inner.width);
    let mut lines: Vec<Line<'_>> = Vec::new();
    match model.controller() {
        Controller::Unknown => lines.push(Line::from("(waiting for ampd)")),
        Controller::Unavailable { reason } => lines.push(Line::from(Span::styled(
            cut(
                &format!("adaptive controller: unavailable ({reason})"),
                width,
            ),
            Style::new().fg(Color::Yellow),
        ))),
        Controller::Available { .. } if decisions.is_empty() => {
            lines.push(Line::from("(no decisions yet)"));
        }
        Controller::Available { .. } => {}
    }
    let shown: Vec<&DecisionRow> = decisions.iter().rev().take(ADAPTIVE_ROWS).collect();
    let summary_w = shown
        .iter()
        .map(|d| d.summary.chars().count())
        .max()
        .unwrap_or(0)
        .min(SUMMARY_MAX);
    lines.extend(shown.iter().map(|d| decision_line(d, summary_w, width)));
    frame.render_widget(Paragraph::new(lines), inner);
}

/// `   #12    61.3s proposed    sleep: batch 32→16   p99 above target · p99_ms 120, batch 32→16`
fn decision_line(d: &DecisionRow, summary_w: usize, width: usize) -> Line<'static> {
    let state_style = match d.state.as_str() {
        "proposed" => Style::new()
            .fg(Color::Yellow)
            .add_modifier(Modifier::BOLD | Modifier::REVERSED),
        "applied" | "adopted" => Style::new().fg(Color::Green),
        "rolled_back" => Style::new().fg(Color::Red),
        "running" => Style::new().fg(Color::Cyan),
        "superseded" => Style::new().fg(Color::DarkGray),
        _ => Style::new(),
    };
    let head = format!("{:>6} {:>8.1}s ", format!("#{}", d.id), d.at_s);
    let state = format!("{:<11}", d.state);
    let summary = format!(" {:<summary_w$}  ", cut(&d.summary, summary_w));
    let why = match (d.reason.is_empty(), d.evidence.is_empty()) {
        (false, false) => format!("{} · {}", d.reason, d.evidence),
        (false, true) => d.reason.clone(),
        (true, _) => d.evidence.clone(),
    };
    let used = head.chars().count() + state.chars().count() + summary.chars().count();
    let mut spans = vec![
        Span::raw(head),
        Span::styled(state, state_style),
        Span::raw(summary),
        Span::raw(cut(&why, width.saturating_sub(used))),
    ];
    if d.is_proposed() {
        spans[0].style = Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD);
        spans[2].style = Style::new().fg(Color::Yellow);
    }
    Line::from(spans)
}

/// `s` cut to `max` characters, the last one an ellipsis when something was cut.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    if max == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

fn render_events(frame: &mut Frame<'_>, model: &Model, area: Rect) {
    let block = Block::bordered().title(" events (newest last) ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let evs = model.events();
    let n = usize::from(inner.height);
    let lines: Vec<Line<'_>> = if evs.is_empty() {
        vec![Line::from("(none yet)")]
    } else {
        evs.iter()
            .skip(evs.len().saturating_sub(n))
            .map(|e| {
                Line::from(format!(
                    "{:>9.3}s #{:<5} {:<12} {:<16} {}",
                    e.at_ms as f64 / 1000.0,
                    e.seq,
                    e.unit,
                    e.kind,
                    e.detail
                ))
            })
            .collect()
    };
    frame.render_widget(Paragraph::new(lines), inner);
}

fn render_status(frame: &mut Frame<'_>, model: &Model, area: Rect) {
    let keys_w = u16::try_from(KEYS.chars().count()).unwrap_or(u16::MAX);
    let [msg, keys] =
        Layout::horizontal([Constraint::Fill(1), Constraint::Length(keys_w)]).areas(area);
    if let Some(m) = model.message() {
        let style = if m.error {
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
        } else {
            Style::new().fg(Color::Green)
        };
        frame.render_widget(Line::from(Span::styled(format!(" {}", m.text), style)), msg);
    }
    frame.render_widget(
        Line::from(KEYS).style(Style::new().add_modifier(Modifier::REVERSED)),
        keys,
    );
}

fn opt<T>(v: Option<T>, f: impl FnOnce(T) -> String) -> String {
    v.map_or_else(|| "-".to_owned(), f)
}

/// `42.1s`, `3m07s`, `2h05m`, `3d04h`.
fn uptime(s: f64) -> String {
    let whole = s.max(0.0) as u64;
    match whole {
        0..=59 => format!("{s:.1}s"),
        60..=3599 => format!("{}m{:02}s", whole / 60, whole % 60),
        3600..=86_399 => format!("{}h{:02}m", whole / 3600, whole % 3600 / 60),
        _ => format!("{}d{:02}h", whole / 86_400, whole % 86_400 / 3600),
    }
}
