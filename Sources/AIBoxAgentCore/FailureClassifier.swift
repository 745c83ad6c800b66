/// What went wrong with one call to a model, as the provider adapter saw it. Adapters fill
/// in what the provider said (its error `type` and `code` from the error body); the
/// classifier decides what the router does about it.
public enum CallFailure: Error, Equatable, Sendable {
    /// No HTTP answer: refused, reset, DNS, TLS, a connect timeout.
    case transport(String)
    /// Connected, but no first byte within the time-to-first-byte budget, or no byte for the
    /// idle budget while streaming.
    case stalled(firstByte: Bool)
    /// An HTTP status other than 2xx, with what the error body and headers said.
    case http(status: Int, type: String? = nil, code: String? = nil, message: String? = nil, retryAfter: Duration? = nil)
    /// After a 200: an error event in the stream (Anthropic's `event: error`), a stream cut
    /// before its end, or a chunk that is not what the protocol says.
    case midStream(String)
}

/// The router's classes of failure: what the next step is after a call failed.
public enum FailureClass: Equatable, Sendable {
    /// Transport, stall, mid-stream: the next route now; the breaker opens on the ladder.
    case unavailable
    /// 408, 429 (rate), 5xx, 529: the next route now; this one cools down for at least `retryAfter`.
    case throttled(retryAfter: Duration?)
    /// Credit, quota or spend limit exhausted: the provider is off for hours; the owner is told.
    case quotaExhausted
    /// 401, 403, an unknown model: off until the configuration changes; the owner is told.
    case misconfigured
    /// The prompt does not fit: compact the history or take a route with a larger context.
    case contextOverflow
    /// Any other 4xx: the request itself is wrong; no other route would take it either.
    case rejected

    /// Whether the next route in the chain is tried.
    public var fallsBack: Bool {
        switch self {
        case .rejected: false
        default: true
        }
    }
}

public enum FailureClassifier {
    public static func classify(_ failure: CallFailure) -> FailureClass {
        switch failure {
        case .transport, .stalled, .midStream:
            return .unavailable
        case .http(let status, let type, let code, let message, let retryAfter):
            let words = [type, code].compactMap { $0?.lowercased() }
            let text = (message ?? "").lowercased()
            func said(_ any: String...) -> Bool { any.contains { w in words.contains { $0.contains(w) } } }
            // Anthropic says a spent monthly limit or credit in words only (rate_limit_error,
            // invalid_request_error): the message decides.
            if status == 402 || said("insufficient_quota", "credit_balance", "spend_limit", "billing", "quota_exceeded")
                || ["spend limit", "credit balance", "current quota", "billing details"].contains(where: text.contains)
            {
                return .quotaExhausted
            }
            if said("context_length", "exceed_context_size", "context_window")
                || text.contains("prompt is too long") || text.contains("context length") || text.contains("context size")
                || text.contains("maximum context")
            {
                return .contextOverflow
            }
            if status == 401 || status == 403 { return .misconfigured }
            if status == 404 || said("model_not_found", "not_found_error") { return .misconfigured }
            if status == 408 || status == 429 || status == 529 || (500...599).contains(status) {
                return .throttled(retryAfter: retryAfter)
            }
            if status == 413 { return .contextOverflow }
            return .rejected
        }
    }

    /// `Retry-After` as a provider sends it: seconds (possibly fractional). An HTTP date is
    /// not read (it would need the wall clock, which a box without NTP does not have right):
    /// the cooldown ladder covers it.
    public static func retryAfter(header: String?) -> Duration? {
        guard let h = header?.trimmingCharacters(in: " \t"), let s = Double(h), s.isFinite, s >= 0 else { return nil }
        return .milliseconds(Int64(min(s, 86_400) * 1000))
    }
}
