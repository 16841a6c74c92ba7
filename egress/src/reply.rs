//! Responses the proxy makes itself, in the provider's own error format so the agent's SDK
//! surfaces them like a provider error:
//!
//! * Anthropic: `{"type":"error","error":{"type":"rate_limit_error","message":"…"}}`
//! * OpenAI and OpenRouter: `{"error":{"message":"…","type":"insufficient_quota","param":null,"code":"…"}}`
//! * Gemini: `{"error":{"code":429,"message":"…","status":"RESOURCE_EXHAUSTED"}}`
//!
//! Every such response carries `x-clawgate-error: <kind>` (see [`Refusal::kind`]), so a reader
//! can tell Clawgate's refusals from the provider's.

use bytes::Bytes;
use http::HeaderValue;
use hyper::header::CONTENT_TYPE;
use hyper::{Response, StatusCode};
use serde_json::json;

use crate::body::ProxyBody;
use crate::config::Provider;
use crate::error::Refusal;

/// The header naming the kind of a refusal made by the proxy.
pub const CLAWGATE_ERROR_HEADER: &str = "x-clawgate-error";

/// The JSON body of `refusal` in `provider`'s format (`None`: no route matched, a neutral
/// OpenAI-like shape).
pub fn error_body(provider: Option<Provider>, refusal: &Refusal) -> serde_json::Value {
    let status = refusal.status;
    let message = refusal.message.as_str();
    match provider {
        Some(Provider::Anthropic) => {
            let ty = match status.as_u16() {
                413 => "request_too_large",
                400 | 408 | 415 => "invalid_request_error",
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                429 => "rate_limit_error",
                503 | 529 => "overloaded_error",
                _ => "api_error",
            };
            json!({ "type": "error", "error": { "type": ty, "message": message } })
        }
        Some(Provider::Gemini) => {
            let st = match status.as_u16() {
                400 | 408 | 413 | 415 => "INVALID_ARGUMENT",
                401 => "UNAUTHENTICATED",
                403 => "PERMISSION_DENIED",
                404 => "NOT_FOUND",
                429 => "RESOURCE_EXHAUSTED",
                502..=504 => "UNAVAILABLE",
                _ => "INTERNAL",
            };
            json!({ "error": { "code": status.as_u16(), "message": message, "status": st } })
        }
        Some(Provider::OpenAi) | Some(Provider::OpenRouter) | None => {
            let (ty, code) = match (status.as_u16(), refusal.kind) {
                (429, "budget_exceeded") => ("insufficient_quota", "insufficient_quota"),
                (401, _) => ("invalid_request_error", "invalid_api_key"),
                (400..=499, kind) => ("invalid_request_error", kind),
                (_, kind) => ("server_error", kind),
            };
            json!({ "error": { "message": message, "type": ty, "param": null, "code": code } })
        }
    }
}

/// The full response for `refusal`.
pub fn refusal_response(provider: Option<Provider>, refusal: &Refusal) -> Response<ProxyBody> {
    let body = error_body(provider, refusal).to_string();
    let mut r = Response::new(ProxyBody::full(Bytes::from(body)));
    *r.status_mut() = refusal.status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(
        CLAWGATE_ERROR_HEADER,
        HeaderValue::from_static(refusal.kind),
    );
    if let Some(secs) = refusal_retry_after(refusal) {
        h.insert(hyper::header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

fn refusal_retry_after(refusal: &Refusal) -> Option<u64> {
    if refusal.kind == "budget_exceeded" {
        Some(crate::store::seconds_until_utc_midnight())
    } else if refusal.status == StatusCode::SERVICE_UNAVAILABLE {
        Some(5)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Side;

    fn budget() -> Refusal {
        Refusal::new(
            StatusCode::TOO_MANY_REQUESTS,
            "budget_exceeded",
            Side::Downstream,
            "over",
        )
    }

    #[test]
    fn budget_refusals_in_each_format() {
        let a = error_body(Some(Provider::Anthropic), &budget());
        assert_eq!(a["type"], "error");
        assert_eq!(a["error"]["type"], "rate_limit_error");
        let o = error_body(Some(Provider::OpenAi), &budget());
        assert_eq!(o["error"]["type"], "insufficient_quota");
        assert_eq!(o["error"]["code"], "insufficient_quota");
        let g = error_body(Some(Provider::Gemini), &budget());
        assert_eq!(g["error"]["code"], 429);
        assert_eq!(g["error"]["status"], "RESOURCE_EXHAUSTED");
    }

    /// A model without a price under a cost budget: 403 in each format, not retryable, no
    /// `Retry-After` (waiting does not help).
    #[test]
    fn unpriced_refusals_in_each_format() {
        let r = Refusal::client(StatusCode::FORBIDDEN, "model_unpriced", "no price");
        let a = error_body(Some(Provider::Anthropic), &r);
        assert_eq!(a["error"]["type"], "permission_error");
        let o = error_body(Some(Provider::OpenRouter), &r);
        assert_eq!(o["error"]["type"], "invalid_request_error");
        assert_eq!(o["error"]["code"], "model_unpriced");
        let g = error_body(Some(Provider::Gemini), &r);
        assert_eq!(g["error"]["status"], "PERMISSION_DENIED");
        let resp = refusal_response(Some(Provider::Anthropic), &r);
        assert_eq!(resp.headers()[CLAWGATE_ERROR_HEADER], "model_unpriced");
        assert!(!resp.headers().contains_key("retry-after"));
        assert!(!r.retryable());
    }

    #[test]
    fn response_carries_kind_header_and_retry_after() {
        let r = refusal_response(Some(Provider::OpenAi), &budget());
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()[CLAWGATE_ERROR_HEADER], "budget_exceeded");
        assert!(r.headers().contains_key("retry-after"));
    }
}
