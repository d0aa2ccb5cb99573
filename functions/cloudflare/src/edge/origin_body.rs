//! The origin's body, read in large pieces. workerd hands a fetched body to a default reader in
//! 4 KB chunks, and every chunk that crosses into wasm costs a promise, closures and copies on
//! both sides of the boundary: a 100 KB page took 24 of them. A BYOB reader with workerd's
//! `readAtLeast` takes 3, and the page still streams.

use futures_util::stream::{self, Stream};
use js_sys::{Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use worker::{Error, Response, ResponseBody, Result};

/// Each read waits for at least this many bytes (fewer only at the end of the body)…
const READ_AT_LEAST: u32 = 32 * 1024;
/// …into a buffer of this size.
const READ_BUFFER: u32 = 64 * 1024;

type Chunks = std::pin::Pin<Box<dyn Stream<Item = Result<Vec<u8>>>>>;

/// The body's chunks: coalesced where the runtime offers `readAtLeast` on a BYOB reader,
/// otherwise as the runtime delivers them.
pub fn chunks(origin: &mut Response) -> Result<Chunks> {
    if let ResponseBody::Stream(body) = origin.body()
        && let Some((reader, read_at_least)) = byob_reader(body)
    {
        return Ok(Box::pin(coalesced(reader, read_at_least)));
    }
    Ok(Box::pin(origin.stream()?))
}

fn byob_reader(body: &JsValue) -> Option<(JsValue, Function)> {
    let options = Object::new();
    Reflect::set(&options, &"mode".into(), &"byob".into()).ok()?;
    let get_reader: Function = Reflect::get(body, &"getReader".into())
        .ok()?
        .dyn_into()
        .ok()?;
    let reader = get_reader.call1(body, &options).ok()?;
    let read_at_least = Reflect::get(&reader, &"readAtLeast".into())
        .ok()?
        .dyn_into()
        .ok()?;
    Some((reader, read_at_least))
}

fn coalesced(reader: JsValue, read_at_least: Function) -> impl Stream<Item = Result<Vec<u8>>> {
    let buffer = Uint8Array::new_with_length(READ_BUFFER);
    stream::unfold(Some((reader, read_at_least, buffer)), |state| async move {
        let (reader, read_at_least, buffer) = state?;
        let read = read_at_least
            .call2(&reader, &READ_AT_LEAST.into(), &buffer)
            .map(Promise::unchecked_from_js);
        let result = match read {
            Ok(promise) => JsFuture::from(promise).await,
            Err(error) => Err(error),
        };
        let result = match result {
            Ok(result) => result,
            Err(error) => return Some((Err(Error::from(error)), None)),
        };
        let done = Reflect::get(&result, &"done".into()).is_ok_and(|d| d.is_truthy());
        let view = Reflect::get(&result, &"value".into())
            .ok()
            .filter(|v| !v.is_undefined())
            .map(Uint8Array::unchecked_from_js);
        let chunk = view.as_ref().map(Uint8Array::to_vec).unwrap_or_default();
        match view {
            _ if done => (!chunk.is_empty()).then_some((Ok(chunk), None)),
            // The read transferred the buffer into `view`: hand the whole of it back for the
            // next read instead of allocating (and zeroing) another 64 KB.
            Some(view) => {
                let buffer = Uint8Array::new(&view.buffer());
                Some((Ok(chunk), Some((reader, read_at_least, buffer))))
            }
            None => Some((
                Err(Error::RustError(
                    "readAtLeast resolved without a buffer".into(),
                )),
                None,
            )),
        }
    })
}
