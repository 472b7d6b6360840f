//! `hubcat send`'s input: the files named, else stdin, cut into events at a delimiter.

use std::path::PathBuf;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};

/// One event's worth of input.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// Its bytes, without the delimiter (nor a `\r` before a `\n` delimiter).
    Bytes(Vec<u8>),
    /// A line longer than the limit: how many bytes it had. Only the limit's worth is
    /// ever held in memory.
    TooLong(u64),
}

/// Reads up to the next `delimiter`, holding at most `max` bytes; `None` at the end of
/// input. A last line without a delimiter counts.
pub(crate) async fn next_line<R: AsyncBufRead + Unpin + ?Sized>(
    reader: &mut R,
    max: usize,
    delimiter: u8,
) -> std::io::Result<Option<Line>> {
    let crlf = delimiter == b'\n';
    let (mut line, mut total, mut too_long) = (Vec::new(), 0u64, false);
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            if total == 0 && line.is_empty() {
                return Ok(None);
            }
            break;
        }
        let end = available.iter().position(|b| *b == delimiter);
        let chunk = &available[..end.unwrap_or(available.len())];
        total += chunk.len() as u64;
        if !too_long {
            if line.len() + chunk.len() > max.saturating_add(usize::from(crlf)) {
                // One byte over the limit is allowed for a `\r` before the `\n`.
                too_long = true;
                line = Vec::new();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let used = chunk.len() + usize::from(end.is_some());
        reader.consume(used);
        if end.is_some() {
            break;
        }
    }
    if crlf && line.last() == Some(&b'\r') {
        line.pop();
        total -= 1;
    }
    if too_long || total > max as u64 {
        return Ok(Some(Line::TooLong(total)));
    }
    Ok(Some(Line::Bytes(line)))
}

/// The inputs in order: each file named (`-` is stdin), or stdin if none is.
pub(crate) struct Inputs {
    pending: std::vec::IntoIter<PathBuf>,
    current: Option<(String, Box<dyn AsyncBufRead + Unpin + Send>)>,
}

impl Inputs {
    /// Checks that every file can be opened before anything is read.
    pub(crate) fn new(files: &[PathBuf]) -> Result<Self, String> {
        for file in files.iter().filter(|f| f.as_os_str() != "-") {
            std::fs::File::open(file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        }
        let files = if files.is_empty() {
            vec![PathBuf::from("-")]
        } else {
            files.to_vec()
        };
        Ok(Self {
            pending: files.into_iter(),
            current: None,
        })
    }

    /// The next event's bytes from the current input, going on to the next input at
    /// the end of one; `None` when all are read. An error names the input.
    pub(crate) async fn next(&mut self, max: usize, delimiter: u8) -> Result<Option<Line>, String> {
        loop {
            if self.current.is_none() {
                let Some(path) = self.pending.next() else {
                    return Ok(None);
                };
                self.current = Some(if path.as_os_str() == "-" {
                    (
                        "stdin".to_owned(),
                        Box::new(BufReader::new(tokio::io::stdin())),
                    )
                } else {
                    let file = tokio::fs::File::open(&path)
                        .await
                        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                    (path.display().to_string(), Box::new(BufReader::new(file)))
                });
            }
            let (name, reader) = self.current.as_mut().expect("opened above");
            match next_line(reader.as_mut(), max, delimiter).await {
                Ok(Some(line)) => return Ok(Some(line)),
                Ok(None) => self.current = None,
                Err(e) => return Err(format!("reading {name} failed: {e}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines_of(input: &[u8], max: usize, chunk: usize, delimiter: u8) -> Vec<Line> {
        // A reader that hands out `chunk` bytes at a time, so lines span reads.
        let mut reader = BufReader::with_capacity(chunk, input);
        let mut out = Vec::new();
        while let Some(line) = next_line(&mut reader, max, delimiter).await.unwrap() {
            out.push(line);
        }
        out
    }

    #[tokio::test]
    async fn lines_keep_their_bytes_and_long_ones_are_measured_not_held() {
        let input = b"one\r\n\ntw\xffo\n0123456789abcdef\nlast";
        for chunk in [1, 3, 64] {
            assert_eq!(
                lines_of(input, 8, chunk, b'\n').await,
                [
                    Line::Bytes(b"one".to_vec()),
                    Line::Bytes(Vec::new()),
                    Line::Bytes(b"tw\xffo".to_vec()),
                    Line::TooLong(16),
                    Line::Bytes(b"last".to_vec()),
                ],
                "chunk {chunk}"
            );
        }
        assert_eq!(
            lines_of(b"12345678\r\n", 8, 4, b'\n').await,
            [Line::Bytes(b"12345678".to_vec())]
        );
        assert_eq!(
            lines_of(b"123456789\n", 8, 4, b'\n').await,
            [Line::TooLong(9)]
        );
        assert!(lines_of(b"", 8, 4, b'\n').await.is_empty());
    }

    #[tokio::test]
    async fn other_delimiters_cut_events_and_keep_line_ends() {
        assert_eq!(
            lines_of(b"a\r\nb\0c\0", 8, 2, 0).await,
            [Line::Bytes(b"a\r\nb".to_vec()), Line::Bytes(b"c".to_vec())]
        );
        // Only a `\n` delimiter drops a `\r` before it, and only it gets the byte's grace.
        assert_eq!(
            lines_of(b"12345678\r,", 8, 4, b',').await,
            [Line::TooLong(9)]
        );
    }
}
