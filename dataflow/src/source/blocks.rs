//! Reading a log in blocks, so that workers share the work of one large file.
//!
//! A file is cut into fixed-size byte blocks; a line belongs to the block its first byte is
//! in. A block reader skips the partial line at its start and finishes the line that runs
//! past its end, so every line is read exactly once, by one block.

use std::fs::File;
use std::os::unix::fs::FileExt;

/// Longest accepted line; a longer one is rejected without being held in memory.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Default block size: large enough to amortise a read, small enough to interleave workers.
pub const DEFAULT_BLOCK_BYTES: u64 = 1 << 20;

/// One line of a block.
#[derive(Debug)]
pub struct Line<'a> {
    /// Byte offset of the line's start in the file.
    pub offset: u64,
    /// The line without its `\n` (cut to [`MAX_LINE_BYTES`] when too long).
    pub bytes: &'a [u8],
    /// True when the line is longer than [`MAX_LINE_BYTES`].
    pub too_long: bool,
}

/// Calls `on_line` for each line that starts in `[start, end)` of `file` (of `file_len`
/// bytes). `buf` is reused between calls.
pub fn read_block(
    file: &File,
    file_len: u64,
    start: u64,
    end: u64,
    buf: &mut Vec<u8>,
    mut on_line: impl FnMut(Line<'_>),
) -> std::io::Result<()> {
    let end = end.min(file_len);
    if start >= end {
        return Ok(());
    }
    // One byte before the block tells whether a line starts exactly at `start`.
    let read_from = start.saturating_sub(1);
    let read_to = (end + MAX_LINE_BYTES as u64 + 1).min(file_len);
    buf.resize((read_to - read_from) as usize, 0);
    file.read_exact_at(buf, read_from)?;
    let mut pos = if start == 0 {
        0
    } else {
        match memchr::memchr(b'\n', buf) {
            Some(newline) => newline + 1,
            None => return Ok(()),
        }
    };
    let block_end = (end - read_from) as usize;
    let at_eof = read_to == file_len;
    while pos < block_end {
        let offset = read_from + pos as u64;
        match memchr::memchr(b'\n', &buf[pos..]) {
            Some(len) => {
                on_line(Line {
                    offset,
                    bytes: &buf[pos..pos + len.min(MAX_LINE_BYTES)],
                    too_long: len > MAX_LINE_BYTES,
                });
                pos += len + 1;
            }
            None => {
                // The last line of the file, or one that runs past what was read.
                let len = buf.len() - pos;
                on_line(Line {
                    offset,
                    bytes: &buf[pos..pos + len.min(MAX_LINE_BYTES)],
                    too_long: !at_eof || len > MAX_LINE_BYTES,
                });
                break;
            }
        }
    }
    Ok(())
}

/// Finds line numbers for byte offsets by counting newlines, moving forward only, so the
/// rows rejected by one reader cost one pass over the file at most.
#[derive(Debug, Default)]
pub struct LineCounter {
    offset: u64,
    newlines: u64,
    buf: Vec<u8>,
}

impl LineCounter {
    /// The 1-based line number of the line starting at `offset`.
    pub fn line_at(&mut self, file: &File, offset: u64) -> std::io::Result<u64> {
        if offset < self.offset {
            self.offset = 0;
            self.newlines = 0;
        }
        self.buf.resize(DEFAULT_BLOCK_BYTES as usize, 0);
        while self.offset < offset {
            let n = ((offset - self.offset) as usize).min(self.buf.len());
            file.read_exact_at(&mut self.buf[..n], self.offset)?;
            self.newlines += memchr::memchr_iter(b'\n', &self.buf[..n]).count() as u64;
            self.offset += n as u64;
        }
        Ok(self.newlines + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn lines_by_blocks(content: &[u8], block: u64) -> Vec<(u64, Vec<u8>, bool)> {
        let mut tmp = tempfile::tempfile().unwrap();
        tmp.write_all(content).unwrap();
        let len = content.len() as u64;
        let mut buf = Vec::new();
        let mut out = Vec::new();
        let mut start = 0;
        while start < len {
            read_block(&tmp, len, start, start + block, &mut buf, |l| {
                out.push((l.offset, l.bytes.to_vec(), l.too_long))
            })
            .unwrap();
            start += block;
        }
        out
    }

    #[test]
    fn every_line_once_for_any_block_size() {
        let content = b"h\nab\n\ncdef\ng\nlast";
        let want = lines_by_blocks(content, 1000);
        assert_eq!(want.len(), 6);
        assert_eq!(want[5], (13, b"last".to_vec(), false));
        for block in 1..=content.len() as u64 {
            assert_eq!(lines_by_blocks(content, block), want, "block size {block}");
        }
    }

    #[test]
    fn over_long_lines_are_flagged_and_skipped() {
        let mut content = b"a\n".to_vec();
        content.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES * 2 + 10));
        content.extend(b"\nb\n");
        for block in [7, 4096, 1 << 20] {
            let lines = lines_by_blocks(&content, block);
            let summary: Vec<_> = lines.iter().map(|(o, b, t)| (*o, b.len(), *t)).collect();
            assert_eq!(
                summary,
                [
                    (0, 1, false),
                    (2, MAX_LINE_BYTES, true),
                    (2 + MAX_LINE_BYTES as u64 * 2 + 11, 1, false)
                ],
                "block size {block}"
            );
        }
    }

    #[test]
    fn line_numbers() {
        let mut tmp = tempfile::tempfile().unwrap();
        tmp.write_all(b"h\nab\n\ncdef\n").unwrap();
        let mut counter = LineCounter::default();
        assert_eq!(counter.line_at(&tmp, 0).unwrap(), 1);
        assert_eq!(counter.line_at(&tmp, 5).unwrap(), 3);
        assert_eq!(counter.line_at(&tmp, 6).unwrap(), 4);
        assert_eq!(counter.line_at(&tmp, 2).unwrap(), 2);
    }
}
