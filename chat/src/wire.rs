//! WebSocket framing (RFC 6455) for chat: server frames are encoded once per message, so a
//! broadcast hands every member the same ready-to-write bytes; client frames are decoded by
//! `Decoder`, which unmasks, reassembles fragments, answers nothing itself and enforces the
//! size limit. No extensions are negotiated, so the RSV bits must be clear.

use bytes::{BufMut, Bytes, BytesMut};

const FIN: u8 = 0x80;
const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Close codes this server sends.
pub mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const INVALID_DATA: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const SLOW_CONSUMER: u16 = 4008;
}

fn frame(opcode: u8, payload: &[u8]) -> Bytes {
    let len = payload.len();
    let mut out = BytesMut::with_capacity(len + 10);
    out.put_u8(FIN | opcode);
    if len < 126 {
        out.put_u8(len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.put_u8(126);
        out.put_u16(len as u16);
    } else {
        out.put_u8(127);
        out.put_u64(len as u64);
    }
    out.put_slice(payload);
    out.freeze()
}

/// A whole, unmasked server text frame around `payload` (which must be UTF-8 JSON).
pub fn text(payload: &[u8]) -> Bytes {
    frame(OP_TEXT, payload)
}

pub fn pong(payload: &[u8]) -> Bytes {
    frame(OP_PONG, payload)
}

pub fn close_frame(code: u16, reason: &str) -> Bytes {
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..reason.len().min(123)]);
    frame(OP_CLOSE, &payload)
}

/// Whole frames as one buffer (one queue entry, one write); a lone frame as it is.
pub fn joined<'a>(frames: impl Iterator<Item = &'a Bytes> + Clone) -> Bytes {
    let mut all = frames.clone();
    match (all.next(), all.next()) {
        (Some(only), None) => only.clone(),
        _ => {
            let mut out = Vec::with_capacity(frames.clone().map(Bytes::len).sum());
            for frame in frames {
                out.extend_from_slice(frame);
            }
            Bytes::from(out)
        }
    }
}

/// The payloads of the server frames in `bytes` (an outbox entry may hold several), for tests
/// and tools reading an outbox.
pub fn payloads(mut bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while bytes.len() >= 2 {
        let (len, header) = match bytes[1] & 0x7f {
            126 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
            127 => (u64::from_be_bytes(bytes[2..10].try_into().expect("8 bytes")) as usize, 10),
            short => (usize::from(short), 2),
        };
        out.push(&bytes[header..header + len]);
        bytes = &bytes[header + len..];
    }
    out
}

/// What the client sent, message by message.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    Text(String),
    Binary,
    Ping(Bytes),
    Pong,
    /// The client closes (its code, if it gave one).
    Close(Option<u16>),
}

/// Why the connection must end: the close code and reason to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation {
    pub code: u16,
    pub reason: &'static str,
}

const fn violation(code: u16, reason: &'static str) -> Violation {
    Violation { code, reason }
}

/// Reassembles client frames from the bytes read off the socket. Holds no memory between
/// messages: its buffers are empty (unallocated) while a connection is idle.
#[derive(Debug)]
pub struct Decoder {
    max_message: usize,
    /// Bytes read but not yet a whole frame.
    pending: Vec<u8>,
    /// A fragmented data message being reassembled: (is text, payload so far).
    partial: Option<(bool, Vec<u8>)>,
}

impl Decoder {
    pub fn new(max_message: usize) -> Self {
        Decoder { max_message, pending: Vec::new(), partial: None }
    }

    /// Takes `input` and returns the messages it completes, in order. A violation ends the
    /// connection; messages decoded before it in the same input are returned with it.
    pub fn feed(&mut self, input: &[u8]) -> (Vec<Incoming>, Option<Violation>) {
        let mut out = Vec::new();
        let mut buffer = std::mem::take(&mut self.pending);
        let data: &[u8] = if buffer.is_empty() {
            input
        } else {
            buffer.extend_from_slice(input);
            &buffer
        };
        let mut at = 0;
        let result = loop {
            match self.frame(&data[at..]) {
                Ok(Some((used, message))) => {
                    at += used;
                    if let Some(message) = message {
                        let closing = matches!(message, Incoming::Close(_));
                        out.push(message);
                        if closing {
                            break None;
                        }
                    }
                }
                Ok(None) => break None,
                Err(violation) => break Some(violation),
            }
        };
        if result.is_none() && at < data.len() {
            self.pending = data[at..].to_vec();
        }
        (out, result)
    }

    /// One frame from the front of `data`: `None` if it is not all there yet; else the bytes it
    /// took and the message it completed, if any.
    #[allow(clippy::type_complexity)]
    fn frame(&mut self, data: &[u8]) -> Result<Option<(usize, Option<Incoming>)>, Violation> {
        if data.len() < 2 {
            return Ok(None);
        }
        let (first, second) = (data[0], data[1]);
        if first & 0x70 != 0 {
            return Err(violation(close::PROTOCOL_ERROR, "reserved bits set"));
        }
        if second & 0x80 == 0 {
            return Err(violation(close::PROTOCOL_ERROR, "client frames must be masked"));
        }
        let (fin, opcode) = (first & FIN != 0, first & 0x0f);
        let (len, header) = match second & 0x7f {
            126 if data.len() >= 4 => (u64::from(u16::from_be_bytes([data[2], data[3]])), 4),
            127 if data.len() >= 10 => (u64::from_be_bytes(data[2..10].try_into().expect("8 bytes")), 10),
            126 | 127 => return Ok(None),
            short => (u64::from(short), 2),
        };
        let control = opcode & 0x8 != 0;
        if control && (!fin || len > 125) {
            return Err(violation(close::PROTOCOL_ERROR, "bad control frame"));
        }
        let so_far = self.partial.as_ref().map_or(0, |(_, payload)| payload.len());
        if len > (self.max_message - so_far.min(self.max_message)) as u64 {
            return Err(violation(close::TOO_BIG, "message too big"));
        }
        let len = len as usize;
        let total = header + 4 + len;
        if data.len() < total {
            return Ok(None);
        }
        let mask: [u8; 4] = data[header..header + 4].try_into().expect("4 bytes");
        let mut payload = data[header + 4..total].to_vec();
        for (i, byte) in payload.iter_mut().enumerate() {
            *byte ^= mask[i & 3];
        }
        let message = match opcode {
            OP_PING => Some(Incoming::Ping(Bytes::from(payload))),
            OP_PONG => Some(Incoming::Pong),
            OP_CLOSE => {
                if payload.len() == 1 {
                    return Err(violation(close::PROTOCOL_ERROR, "bad close frame"));
                }
                Some(Incoming::Close((payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]))))
            }
            OP_TEXT | OP_BINARY => {
                if self.partial.is_some() {
                    return Err(violation(close::PROTOCOL_ERROR, "a new message inside a fragmented one"));
                }
                if fin {
                    Some(Self::complete(opcode == OP_TEXT, payload)?)
                } else {
                    self.partial = Some((opcode == OP_TEXT, payload));
                    None
                }
            }
            OP_CONTINUATION => {
                let Some((is_text, mut so_far)) = self.partial.take() else {
                    return Err(violation(close::PROTOCOL_ERROR, "continuation without a message"));
                };
                so_far.extend_from_slice(&payload);
                if fin {
                    Some(Self::complete(is_text, so_far)?)
                } else {
                    self.partial = Some((is_text, so_far));
                    None
                }
            }
            _ => return Err(violation(close::PROTOCOL_ERROR, "unknown opcode")),
        };
        Ok(Some((total, message)))
    }

    fn complete(is_text: bool, payload: Vec<u8>) -> Result<Incoming, Violation> {
        if !is_text {
            return Ok(Incoming::Binary);
        }
        String::from_utf8(payload).map(Incoming::Text).map_err(|_| violation(close::INVALID_DATA, "text is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    fn client(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut out = vec![first];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 65535 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        out
    }

    #[test]
    fn server_frames_have_the_right_length_encoding() {
        for len in [0usize, 125, 126, 65535, 65536] {
            let body = vec![b'a'; len];
            let frame = text(&body);
            assert_eq!(frame[0], 0x81);
            assert_eq!(payloads(&frame), vec![&body[..]], "{len}");
        }
        assert_eq!(&close_frame(1008, "x")[..], &[0x88, 3, 0x03, 0xf0, b'x']);
        assert_eq!(&pong(b"hi")[..], &[0x8a, 2, b'h', b'i']);
        let two = [text(b"a"), text(&[b'b'; 300])].concat();
        assert_eq!(payloads(&two), vec![&b"a"[..], &[b'b'; 300][..]]);
    }

    #[test]
    fn frames_split_anywhere_decode_the_same() {
        let mut stream = client(0x81, br#"{"type":"ping"}"#);
        stream.extend(client(0x89, b"p"));
        stream.extend(client(0x01, b"hel"));
        stream.extend(client(0x8a, b""));
        stream.extend(client(0x80, b"lo"));
        stream.extend(client(0x82, &[0, 1, 2]));
        stream.extend(client(0x81, &vec![b'x'; 300]));
        stream.extend(client(0x88, &1000u16.to_be_bytes()));
        let expected = vec![
            Incoming::Text(r#"{"type":"ping"}"#.into()),
            Incoming::Ping(Bytes::from_static(b"p")),
            Incoming::Pong,
            Incoming::Text("hello".into()),
            Incoming::Binary,
            Incoming::Text("x".repeat(300)),
            Incoming::Close(Some(1000)),
        ];
        for chunk in [1, 2, 3, 7, 64, stream.len()] {
            let mut decoder = Decoder::new(1024);
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                let (messages, violation) = decoder.feed(piece);
                assert_eq!(violation, None);
                got.extend(messages);
            }
            assert_eq!(got, expected, "chunks of {chunk}");
        }
    }

    #[test]
    fn broken_frames_are_violations_with_the_right_code() {
        let cases: Vec<(Vec<u8>, u16)> = vec![
            (
                {
                    let mut f = client(0x81, b"hi");
                    f[1] &= 0x7f;
                    f
                },
                close::PROTOCOL_ERROR,
            ), // unmasked
            (client(0xc1, b"hi"), close::PROTOCOL_ERROR),     // RSV1
            (client(0x83, b"hi"), close::PROTOCOL_ERROR),     // opcode 3
            (client(0x09, b"p"), close::PROTOCOL_ERROR),      // fragmented ping
            (client(0x89, &[0; 126]), close::PROTOCOL_ERROR), // long ping
            (client(0x80, b"x"), close::PROTOCOL_ERROR),      // stray continuation
            ([client(0x01, b"a"), client(0x81, b"b")].concat(), close::PROTOCOL_ERROR), // interleaved
            (client(0x81, &[0xff, 0xfe]), close::INVALID_DATA), // not UTF-8
            (client(0x81, &[b'a'; 2000]), close::TOO_BIG),
            ([client(0x01, &[b'a'; 600]), client(0x80, &[b'a'; 600])].concat(), close::TOO_BIG),
            (client(0x88, &[3]), close::PROTOCOL_ERROR), // one-byte close
        ];
        for (bytes, code) in cases {
            let (_, violation) = Decoder::new(1024).feed(&bytes);
            assert_eq!(violation.map(|v| v.code), Some(code), "{bytes:02x?}");
        }
        // A huge declared length is refused from the header alone, before any payload arrives.
        let mut header = vec![0x81, 0x80 | 127];
        header.extend_from_slice(&(1u64 << 40).to_be_bytes());
        assert_eq!(Decoder::new(1024).feed(&header).1.map(|v| v.code), Some(close::TOO_BIG));
    }

    #[test]
    fn an_idle_decoder_holds_no_memory() {
        let mut decoder = Decoder::new(1024);
        let frame = client(0x81, b"{}");
        decoder.feed(&frame[..3]);
        assert!(decoder.pending.capacity() > 0);
        decoder.feed(&frame[3..]);
        assert_eq!((decoder.pending.capacity(), decoder.partial.is_none()), (0, true));
    }
}
