//! Breaking RFC 6455: which errors get which close code, so that the peer learns why instead of
//! seeing the connection drop.

use tokio_tungstenite::tungstenite::error::Error as WsError;

use super::registry::CloseRequest;
use crate::protocol::close;

/// The close code and reason for breaking the protocol (RFC 6455 §7.4.1: 1002, or 1007 for text
/// that is not UTF-8), so that the peer learns why instead of seeing the connection drop.
/// `None` for errors that leave nothing to answer (the connection is gone).
pub fn close_code(error: &WsError) -> Option<(u16, &'static str)> {
    use tokio_tungstenite::tungstenite::error::ProtocolError as P;
    Some(match error {
        WsError::Utf8(_) => (close::INVALID_DATA, close::REASON_INVALID_DATA),
        WsError::Protocol(
            P::NonZeroReservedBits
            | P::UnmaskedFrameFromClient
            | P::FragmentedControlFrame
            | P::ControlFrameTooBig
            | P::UnknownControlFrameType(_)
            | P::UnknownDataFrameType(_)
            | P::UnexpectedContinueFrame
            | P::ExpectedFragment(_)
            | P::InvalidOpcode(_)
            | P::InvalidCloseSequence,
        ) => (close::PROTOCOL_ERROR, close::REASON_PROTOCOL_ERROR),
        _ => return None,
    })
}

/// [`close_code`] as an authenticated device's close request.
pub fn close_request(error: &WsError) -> Option<CloseRequest> {
    let (code, reason) = close_code(error)?;
    tracing::debug!("closing a device with {code}: {error}");
    // Nothing queued is worth sending after a violation: the stream can't be trusted.
    Some(CloseRequest::frame_now(code, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_violations_get_1002_and_bad_utf8_1007() {
        use tokio_tungstenite::tungstenite::error::ProtocolError;
        let code = |e: WsError| close_request(&e).and_then(|r| r.code());
        assert_eq!(
            code(WsError::Protocol(ProtocolError::UnmaskedFrameFromClient)),
            Some(1002)
        );
        assert_eq!(
            code(WsError::Protocol(ProtocolError::NonZeroReservedBits)),
            Some(1002)
        );
        assert_eq!(code(WsError::Utf8("bad".into())), Some(1007));
        assert_eq!(code(WsError::ConnectionClosed), None);
        assert_eq!(
            code(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)),
            None
        );
    }
}
