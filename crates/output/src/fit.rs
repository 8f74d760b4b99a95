//! Fitting table output to the terminal. A table whose lines are wider
//! than the terminal has its widest columns cut (with an ellipsis) down to
//! a narrowest useful width; when even that does not fit, `auto` prints
//! each row as a record, one column per line (psql's `\x`). Output that is
//! not a terminal has no width and is never cut.

use std::borrow::Cow;

use clap::ValueEnum;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// One row per line, or one column per line (psql `\x`, DuckDB `.mode line`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Expanded {
    /// Records when the table cannot fit the terminal even with its cells cut.
    #[default]
    Auto,
    On,
    Off,
}

/// What the table format fits its output to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fit {
    /// Terminal columns; None: not a terminal, or `--wide`: never cut.
    pub width: Option<usize>,
    pub expanded: Expanded,
}

/// The narrowest a cut column gets: five characters and the ellipsis.
pub const MIN_CELL: usize = 6;
/// A first column up to this wide is not cut while others can be.
const KEEP_FIRST: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// A table with these column widths (cells wider are cut).
    Table(Vec<usize>),
    /// One record per row: names padded to `names`, values cut to `values`.
    Records { names: usize, values: Option<usize> },
}

/// A table's line width for column widths `w`: "| a | b |".
pub fn line_width(w: &[usize]) -> usize {
    1 + w.iter().map(|w| w + 3).sum::<usize>()
}

/// Choose the layout for columns whose widest cells (header included) are
/// `natural` wide and whose names are `names` wide.
pub fn layout(natural: &[usize], names: &[usize], fit: Fit) -> Layout {
    let widest_name = names.iter().copied().max().unwrap_or(0);
    let records = Layout::Records {
        names: widest_name,
        values: fit.width.map(|w| w.saturating_sub(widest_name + 3).max(MIN_CELL)),
    };
    if fit.expanded == Expanded::On {
        return records;
    }
    let Some(width) = fit.width else { return Layout::Table(natural.to_vec()) };
    if line_width(natural) <= width {
        return Layout::Table(natural.to_vec());
    }
    let capped = |cap: usize| natural.iter().map(|&n| n.min(cap)).collect::<Vec<_>>();
    if line_width(&capped(MIN_CELL)) > width {
        return match fit.expanded {
            Expanded::Off => Layout::Table(capped(MIN_CELL)),
            _ => records,
        };
    }
    // The first column names the row (a name, a port): kept whole when it
    // is short and the others can still be shown.
    let keep_first = natural.first().is_some_and(|&n| n <= KEEP_FIRST) && {
        let mut w = capped(MIN_CELL);
        w[0] = natural[0];
        line_width(&w) <= width
    };
    let capped = |cap: usize| {
        let mut w = capped(cap);
        if keep_first {
            w[0] = natural[0];
        }
        w
    };
    // The widest cap that fits, then the columns it cut share what is left.
    let (mut lo, mut hi) = (MIN_CELL, natural.iter().copied().max().unwrap_or(MIN_CELL));
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if line_width(&capped(mid)) <= width {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let mut w = capped(lo);
    let mut spare = width - line_width(&w);
    for (w, &n) in w.iter_mut().zip(natural) {
        if spare == 0 {
            break;
        }
        if *w < n {
            *w += 1;
            spare -= 1;
        }
    }
    Layout::Table(w)
}

/// `s` cut to `width` display columns, ending in an ellipsis when cut.
///
/// Widths are those of whole strings, as the columns were measured: a
/// string's width is not the sum of its characters' (an emoji with its
/// presentation selector, U+2764 U+FE0F, is 2 wide though its characters
/// are 1 and 0; a joined sequence is narrower than its parts). So the cut
/// is the longest prefix whose own width leaves room for the ellipsis,
/// never one measured character by character, which could come out wider
/// than the column and misalign the table.
pub fn cut(s: &str, width: usize) -> Cow<'_, str> {
    if s.width() <= width {
        return Cow::Borrowed(s);
    }
    let room = width.saturating_sub(1);
    // Candidates: the prefixes whose characters' widths add up to at most
    // `room` (bounded by the column, whatever the cell's length).
    let mut ends = Vec::new();
    let mut used = 0;
    for (i, ch) in s.char_indices() {
        used += ch.width().unwrap_or(0);
        if used > room {
            break;
        }
        ends.push(i + ch.len_utf8());
    }
    // The longest of them that also fits by its own width (widths grow
    // with the prefix; whatever the search settles on was checked).
    let (mut lo, mut hi) = (0, ends.len());
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if s[..ends[mid - 1]].width() <= room {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let mut out = String::from(if lo == 0 { "" } else { &s[..ends[lo - 1]] });
    out.push('…');
    Cow::Owned(out)
}

/// The width tables on standard output fit: the terminal's, or 80 when
/// it does not say.
pub fn stdout_width() -> usize {
    terminal_width(std::io::stdout()).unwrap_or(80)
}

/// The terminal's width in columns, if `fd` is one (TIOCGWINSZ).
pub fn terminal_width(fd: impl std::os::fd::AsFd) -> Option<usize> {
    let cols = rustix::termios::tcgetwinsize(fd).ok()?.ws_col;
    (cols > 0).then_some(cols as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fit(width: usize) -> Fit {
        Fit { width: Some(width), expanded: Expanded::Auto }
    }

    #[test]
    fn a_table_that_fits_is_left_alone() {
        assert_eq!(layout(&[5, 10], &[5, 5], fit(80)), Layout::Table(vec![5, 10]));
        assert_eq!(layout(&[500], &[5], Fit::default()), Layout::Table(vec![500]), "no terminal, no cut");
    }

    #[test]
    fn the_widest_columns_are_cut_to_fit_exactly() {
        let Layout::Table(w) = layout(&[8, 200, 60], &[8, 11, 7], fit(80)) else { panic!() };
        assert_eq!(line_width(&w), 80);
        assert_eq!(w[0], 8, "a narrow column keeps its width");
        assert!(w[1] >= w[2] - 1 && w[1] < 200, "{w:?}");
    }

    #[test]
    fn too_many_columns_become_records() {
        let natural = vec![10; 40];
        assert_eq!(layout(&natural, &[9; 40], fit(120)), Layout::Records { names: 9, values: Some(108) });
        let off = layout(&natural, &[9; 40], Fit { width: Some(120), expanded: Expanded::Off });
        assert_eq!(off, Layout::Table(vec![MIN_CELL; 40]));
        assert_eq!(
            layout(&[1], &[1], Fit { width: None, expanded: Expanded::On }),
            Layout::Records { names: 1, values: None }
        );
    }

    #[test]
    fn cuts_by_display_width() {
        assert_eq!(cut("abcdefgh", 8), "abcdefgh");
        assert_eq!(cut("abcdefgh", 6), "abcde…");
        assert_eq!(cut("日本語テキスト", 6), "日本…");
        assert_eq!(cut("日本語テキスト", 6).width(), 5);
        // Sequences wider than their characters: the cut still fits.
        let hearts = "\u{2764}\u{fe0f}".repeat(20);
        for w in 1..30 {
            assert!(cut(&hearts, w).width() <= w, "{w}: {}", cut(&hearts, w));
        }
        assert_eq!(cut(&"\u{fffd}".repeat(10), 6), "\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}…");
    }
}
