//! Text tables: columns padded to their widest cell, left or right aligned.

use std::fmt::Write as _;

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Align {
    Left,
    Right,
}

/// Columns padded to their widest cell; the last column is not padded.
pub(crate) struct Table {
    header: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(header: &[(&'static str, Align)]) -> Table {
        Table {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub(crate) fn render(&self, out: &mut String) {
        let mut widths: Vec<usize> = self.header.iter().map(|(h, _)| h.len()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let last = self.header.len() - 1;
        let mut line = |cells: &mut dyn Iterator<Item = &str>| {
            let mut s = String::new();
            for (i, cell) in cells.enumerate() {
                let (w, align) = (widths[i], self.header[i].1);
                if i == last {
                    s.push_str(cell);
                } else if align == Align::Right {
                    write!(s, "{cell:>w$}  ").ok();
                } else {
                    write!(s, "{cell:<w$}  ").ok();
                }
            }
            writeln!(out, "{}", s.trim_end()).ok();
        };
        line(&mut self.header.iter().map(|(h, _)| *h));
        for row in &self.rows {
            line(&mut row.iter().map(String::as_str));
        }
    }
}
