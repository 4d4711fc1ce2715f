//! Arrow IPC *stream* format, read from the same private memory mapping as the file format.
//!
//! A stream has no footer: a schema message comes first, then dictionary and record batch
//! messages, each an encapsulated message (continuation marker `0xFFFFFFFF`, a little-endian
//! i32 metadata length, the flatbuffer `Message` padded to 8 bytes, then `bodyLength` bytes of
//! body), and an end-of-stream marker (a zero length). Streams written before Arrow 0.15 leave
//! the continuation marker out; those are read too.
//!
//! Opening walks the messages once, reading only their headers: every metadata length and body
//! length is checked against the file size before anything is sliced, every flatbuffer is
//! verified, and each message's place is recorded as a `Block` (offset, metadata length with
//! its prefix, body length), the same description a file footer gives. Batches found this way
//! are decoded exactly like those of the file format: zero-copy where the body is aligned.
//!
//! Dictionary batches are decoded together before any record batch. A delta (`isDelta`) only
//! appends values, so keys written before it still index the same values; a dictionary that is
//! *replaced* (a second non-delta batch for the same id) would give earlier batches other
//! values, and is refused with an error that names the message.

use arrow::datatypes::Schema;
use arrow::ipc::{self, Block, MessageHeader, MetadataVersion};

use crate::ipc::{BatchInfo, record_batch_rows};

/// Continuation marker that starts each message of a stream written by Arrow 0.15 or later.
const CONTINUATION: [u8; 4] = [0xff; 4];

/// What walking a stream found.
pub(crate) struct StreamLayout {
    pub schema: Schema,
    pub version: MetadataVersion,
    pub batches: Vec<BatchInfo>,
    pub batch_row_starts: Vec<u64>,
    pub dictionary_blocks: Vec<Block>,
}

/// One encapsulated message: where it starts, its prefixed metadata length and its body length.
struct Framed {
    offset: usize,
    meta_len: usize,
    body_len: usize,
}

/// Whether `bytes` look like the start of an IPC stream: a continuation marker, or (before
/// Arrow 0.15) a plausible metadata length followed by a flatbuffer `Schema` message.
pub(crate) fn looks_like_stream(bytes: &[u8]) -> bool {
    if bytes.len() >= 8 && bytes[..4] == CONTINUATION {
        return true;
    }
    let Some(prefix) = bytes.get(..4) else {
        return false;
    };
    let length = i32::from_le_bytes(prefix.try_into().expect("4 bytes"));
    length >= 8
        && (length as usize) <= bytes.len() - 4
        && crate::nesting::root_as_message(&bytes[4..4 + length as usize])
            .is_ok_and(|message| message.header_type() == MessageHeader::Schema)
}

/// Reads the frame of the message at `offset`: `Ok(None)` at the end-of-stream marker.
fn frame_at(bytes: &[u8], offset: usize, number: usize) -> Result<Option<Framed>, String> {
    let place = || format!("message {number} (byte offset {offset})");
    let len = bytes.len();
    let rest = &bytes[offset..];
    if rest.len() < 4 {
        return Err(format!(
            "{}: the stream ends after {} bytes, before the end-of-stream marker: the file is truncated",
            place(),
            rest.len()
        ));
    }
    let (prefix_len, length_bytes) = if rest[..4] == CONTINUATION {
        if rest.len() < 8 {
            return Err(format!(
                "{}: the stream ends inside a message length prefix: the file is truncated",
                place()
            ));
        }
        (8, &rest[4..8])
    } else {
        (4, &rest[..4])
    };
    let meta = i32::from_le_bytes(length_bytes.try_into().expect("4 bytes"));
    // In a stream that uses continuation markers, a message without one is damage; only its
    // last 4 bytes may be a bare end-of-stream marker (the pre-0.15 form).
    let bare_end = meta == 0 && rest.len() == 4;
    if prefix_len == 4 && offset > 0 && bytes[..4] == CONTINUATION && !bare_end {
        return Err(format!(
            "{}: expected the continuation marker 0xFFFFFFFF, found {:02x?}",
            place(),
            &rest[..4]
        ));
    }
    if meta == 0 {
        return Ok(None);
    }
    if meta < 0 {
        return Err(format!("{}: negative metadata length {meta}", place()));
    }
    let meta_end = offset as u128 + prefix_len as u128 + meta as u128;
    if meta_end > len as u128 {
        return Err(format!(
            "{}: its metadata ({meta} bytes) runs past the end of the file ({len} bytes): the file is truncated",
            place()
        ));
    }
    let meta_len = prefix_len + meta as usize;
    let message = crate::nesting::root_as_message(&bytes[offset + prefix_len..offset + meta_len])
        .map_err(|e| {
        format!(
            "{}: invalid message flatbuffer: {}",
            place(),
            crate::nesting::flatbuffer_error(&e)
        )
    })?;
    let body = message.bodyLength();
    if body < 0 || meta_end + body as u128 > len as u128 {
        return Err(format!(
            "{}: its body ({body} bytes from byte offset {meta_end}) runs past the end of the file ({len} bytes): the file is truncated",
            place()
        ));
    }
    Ok(Some(Framed {
        offset,
        meta_len,
        body_len: body as usize,
    }))
}

/// Walks the messages of the stream in `bytes` once, checking every frame against the size.
/// Errors say which message (numbered from 0, the schema) and at which byte offset.
pub(crate) fn walk_stream(bytes: &[u8]) -> Result<StreamLayout, String> {
    let first = frame_at(bytes, 0, 0)?.ok_or("the stream ends before its schema message")?;
    let message = crate::nesting::root_as_message(&bytes[prefix_of(bytes, 0)..first.meta_len])
        .map_err(|e| {
            format!(
                "message 0 (byte offset 0): invalid message flatbuffer: {}",
                crate::nesting::flatbuffer_error(&e)
            )
        })?;
    let ipc_schema = message.header_as_schema().ok_or_else(|| {
        format!(
            "message 0 (byte offset 0) is a {:?} message; a stream starts with its schema",
            message.header_type()
        )
    })?;
    if !ipc_schema.endianness().equals_to_target_endianness() {
        return Err("the stream is big-endian; only little-endian data can be mapped".into());
    }
    let schema = ipc::convert::try_fb_to_schema(ipc_schema)
        .map_err(|e| format!("message 0 (byte offset 0): invalid schema: {e}"))?;
    crate::nesting::check_arrow_schema_depth(&schema)?;
    let version = message.version();

    let mut batches = Vec::new();
    let mut batch_row_starts = vec![0u64];
    let mut dictionary_blocks = Vec::new();
    let mut dictionary_ids = std::collections::HashSet::new();
    let mut offset = first.offset + first.meta_len + first.body_len;
    let mut number = 1usize;
    while let Some(frame) = frame_at(bytes, offset, number)? {
        let place = format!("message {number} (byte offset {offset})");
        let prefix = prefix_of(bytes, offset);
        let message =
            crate::nesting::root_as_message(&bytes[offset + prefix..offset + frame.meta_len])
                .map_err(|e| {
                    format!(
                        "{place}: invalid message flatbuffer: {}",
                        crate::nesting::flatbuffer_error(&e)
                    )
                })?;
        if version != MetadataVersion::V1 && message.version() != version {
            return Err(format!(
                "{place} has metadata version {:?}, the schema message has {version:?}",
                message.version()
            ));
        }
        let block = Block::new(offset as i64, frame.meta_len as i32, frame.body_len as i64);
        match message.header_type() {
            MessageHeader::RecordBatch => {
                let header = message
                    .header_as_record_batch()
                    .ok_or_else(|| format!("{place}: no record batch header"))?;
                let index = batches.len();
                let num_rows = record_batch_rows(header, &schema)
                    .map_err(|e| format!("{place} (record batch {index}): {e}"))?;
                let end = batch_row_starts
                    .last()
                    .copied()
                    .unwrap_or(0)
                    .checked_add(num_rows)
                    .filter(|&end| end <= i64::MAX as u64)
                    .ok_or_else(|| format!("the row counts of the record batches add up to more than {} (at {place})", i64::MAX))?;
                batch_row_starts.push(end);
                batches.push(BatchInfo {
                    block,
                    num_rows,
                    compression: header.compression().map(|c| c.codec()),
                });
            }
            MessageHeader::DictionaryBatch => {
                let dictionary = message
                    .header_as_dictionary_batch()
                    .ok_or_else(|| format!("{place}: no dictionary batch header"))?;
                let id = dictionary.id();
                if !dictionary_ids.insert(id) && !dictionary.isDelta() {
                    return Err(format!(
                        "{place} replaces dictionary {id}: dictionaries that change within a stream are not supported \
                         (deltas are); rewrite the file with `relay convert` or as an Arrow IPC file"
                    ));
                }
                dictionary_blocks.push(block);
            }
            MessageHeader::Schema => return Err(format!("{place} is a second schema message")),
            other => {
                return Err(format!(
                    "{place} is a {other:?} message, which an Arrow stream of record batches cannot hold"
                ));
            }
        }
        offset = frame.offset + frame.meta_len + frame.body_len;
        number += 1;
    }
    // What follows the end-of-stream marker may only be padding: anything else is a damaged
    // marker or a second stream, whose rows would otherwise be dropped without a word.
    let end = (offset + prefix_of(bytes, offset)).min(bytes.len());
    if let Some(extra) = bytes[end..].iter().position(|&byte| byte != 0) {
        return Err(format!(
            "message {number} (byte offset {offset}) is the end-of-stream marker, but {} more bytes follow it (the first non-zero one at byte offset {})",
            bytes.len() - end,
            end + extra
        ));
    }
    Ok(StreamLayout {
        schema,
        version,
        batches,
        batch_row_starts,
        dictionary_blocks,
    })
}

/// Length of the length prefix of the message at `offset` (8 with a continuation marker).
fn prefix_of(bytes: &[u8], offset: usize) -> usize {
    if bytes[offset..].starts_with(&CONTINUATION) {
        8
    } else {
        4
    }
}
