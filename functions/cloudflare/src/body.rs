//! Streams a response body through a rewriter chunk by chunk, never holding the whole body.

use futures_util::stream::{self, Stream, StreamExt};

/// Why a rewriter refused a chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewriteError {
    /// What went wrong, for the log.
    pub reason: String,
}

impl std::fmt::Display for RewriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rewrite failed: {}", self.reason)
    }
}

impl std::error::Error for RewriteError {}

/// Turns the origin's body into the visitor's body, one chunk at a time.
///
/// `finish` exists because an HTML rewriter may hold back the tail of a tag until it has seen
/// what follows; at the end of the body it must hand over what it kept.
pub trait BodyRewriter {
    /// Rewrites one chunk; may return fewer or more bytes than it was given.
    fn push(&mut self, chunk: &[u8]) -> Result<Vec<u8>, RewriteError>;

    /// Returns whatever is still held back once the origin's body has ended.
    fn finish(&mut self) -> Result<Vec<u8>, RewriteError> {
        Ok(Vec::new())
    }
}

/// Any `FnMut(&[u8]) -> Vec<u8>` is a rewriter that holds nothing back.
impl<F: FnMut(&[u8]) -> Vec<u8>> BodyRewriter for F {
    fn push(&mut self, chunk: &[u8]) -> Result<Vec<u8>, RewriteError> {
        Ok(self(chunk))
    }
}

/// Byte counts of one streamed body, handed to `on_end` when the body is complete.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamTally {
    /// Chunks received from the origin.
    pub chunks: u64,
    /// Bytes received from the origin.
    pub bytes_in: u64,
    /// Bytes handed to the visitor.
    pub bytes_out: u64,
}

/// State carried from one chunk to the next.
struct Pipe<S, R, F> {
    source: S,
    rewriter: R,
    tally: StreamTally,
    on_end: F,
}

/// The source's chunks passed through `rewriter`, lazily: nothing is read from the source until
/// the visitor's side asks for the next chunk. Empty output chunks are skipped. After a source
/// or rewrite error the stream ends with that error; `on_end` runs only when the body is complete.
pub fn rewrite_stream<S, E, R, F>(
    source: S,
    rewriter: R,
    on_end: F,
) -> impl Stream<Item = Result<Vec<u8>, E>>
where
    S: Stream<Item = Result<Vec<u8>, E>> + Unpin,
    E: From<RewriteError>,
    R: BodyRewriter,
    F: FnOnce(StreamTally),
{
    let pipe = Pipe {
        source,
        rewriter,
        tally: StreamTally::default(),
        on_end,
    };
    stream::unfold(Some(pipe), |state| async move {
        let mut pipe = state?;
        match pipe.source.next().await {
            Some(Ok(chunk)) => {
                pipe.tally.chunks += 1;
                pipe.tally.bytes_in += chunk.len() as u64;
                match pipe.rewriter.push(&chunk) {
                    Ok(out) => {
                        pipe.tally.bytes_out += out.len() as u64;
                        Some((Ok(out), Some(pipe)))
                    }
                    Err(error) => Some((Err(E::from(error)), None)),
                }
            }
            Some(Err(error)) => Some((Err(error), None)),
            None => match pipe.rewriter.finish() {
                Ok(out) => {
                    let mut tally = pipe.tally;
                    tally.bytes_out += out.len() as u64;
                    (pipe.on_end)(tally);
                    Some((Ok(out), None))
                }
                Err(error) => Some((Err(E::from(error)), None)),
            },
        }
    })
    .filter(|item| std::future::ready(!matches!(item, Ok(chunk) if chunk.is_empty())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use futures::stream::{self, TryStreamExt};
    use std::cell::Cell;
    use std::rc::Rc;

    #[derive(Debug, PartialEq)]
    enum TestError {
        Source(&'static str),
        Rewrite(String),
    }

    impl From<RewriteError> for TestError {
        fn from(error: RewriteError) -> Self {
            TestError::Rewrite(error.reason)
        }
    }

    fn chunks(parts: &[&str]) -> Vec<Result<Vec<u8>, TestError>> {
        parts.iter().map(|p| Ok(p.as_bytes().to_vec())).collect()
    }

    #[test]
    fn the_identity_rewriter_keeps_every_byte_and_tallies_the_stream() {
        let tally = Rc::new(Cell::new(None));
        let seen = tally.clone();
        let out = rewrite_stream(
            stream::iter(chunks(&["<html><h1 cla", "ss=\"hero\">Hi</h1>", "</html>"])),
            |chunk: &[u8]| chunk.to_vec(),
            move |t| seen.set(Some(t)),
        );
        let body: Vec<Vec<u8>> = block_on(out.try_collect()).expect("no error");
        assert_eq!(body.concat(), b"<html><h1 class=\"hero\">Hi</h1></html>");
        assert_eq!(body.len(), 3, "one output chunk per input chunk");
        assert_eq!(
            tally.get(),
            Some(StreamTally {
                chunks: 3,
                bytes_in: 37,
                bytes_out: 37
            })
        );
    }

    #[test]
    fn output_is_produced_chunk_by_chunk_without_reading_ahead() {
        let pulled = Rc::new(Cell::new(0));
        let counter = pulled.clone();
        let source = stream::iter(chunks(&["a", "b", "c"])).inspect(move |_| {
            counter.set(counter.get() + 1);
        });
        let mut out = Box::pin(rewrite_stream(
            source,
            |chunk: &[u8]| chunk.to_ascii_uppercase(),
            |_| {},
        ));
        let first = block_on(out.next());
        assert_eq!(first, Some(Ok(b"A".to_vec())));
        assert_eq!(
            pulled.get(),
            1,
            "only the first chunk was read from the origin"
        );
    }

    /// Holds back a trailing `<` until the next chunk shows what follows, like an HTML tokenizer.
    struct HoldBack {
        held: Vec<u8>,
    }

    impl BodyRewriter for HoldBack {
        fn push(&mut self, chunk: &[u8]) -> Result<Vec<u8>, RewriteError> {
            let mut all = std::mem::take(&mut self.held);
            all.extend_from_slice(chunk);
            if all.last() == Some(&b'<') {
                self.held = all.split_off(all.len() - 1);
            }
            Ok(all)
        }

        fn finish(&mut self) -> Result<Vec<u8>, RewriteError> {
            Ok(std::mem::take(&mut self.held))
        }
    }

    #[test]
    fn held_back_bytes_are_flushed_at_the_end_and_empty_chunks_are_skipped() {
        let out = rewrite_stream(
            stream::iter(chunks(&["<", "p>x<"])),
            HoldBack { held: Vec::new() },
            |_| {},
        );
        let body: Vec<Vec<u8>> = block_on(out.try_collect()).expect("no error");
        assert_eq!(body, vec![b"<p>x".to_vec(), b"<".to_vec()]);
    }

    struct FailOnSecond {
        calls: u32,
    }

    impl BodyRewriter for FailOnSecond {
        fn push(&mut self, chunk: &[u8]) -> Result<Vec<u8>, RewriteError> {
            self.calls += 1;
            if self.calls == 2 {
                return Err(RewriteError {
                    reason: "memory limit".into(),
                });
            }
            Ok(chunk.to_vec())
        }
    }

    #[test]
    fn a_rewrite_error_ends_the_stream_and_on_end_does_not_run() {
        let ended = Rc::new(Cell::new(false));
        let flag = ended.clone();
        let out = rewrite_stream(
            stream::iter(chunks(&["a", "b", "c"])),
            FailOnSecond { calls: 0 },
            move |_| flag.set(true),
        );
        let items: Vec<_> = block_on(out.collect());
        assert_eq!(
            items,
            vec![
                Ok(b"a".to_vec()),
                Err(TestError::Rewrite("memory limit".into()))
            ]
        );
        assert!(!ended.get());
    }

    #[test]
    fn a_source_error_is_passed_on_and_ends_the_stream() {
        let source = stream::iter(vec![
            Ok(b"a".to_vec()),
            Err(TestError::Source("reset")),
            Ok(b"never".to_vec()),
        ]);
        let items: Vec<_> =
            block_on(rewrite_stream(source, |c: &[u8]| c.to_vec(), |_| {}).collect());
        assert_eq!(
            items,
            vec![Ok(b"a".to_vec()), Err(TestError::Source("reset"))]
        );
    }
}
