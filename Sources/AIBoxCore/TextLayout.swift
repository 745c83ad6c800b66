/// Human output for an 80-column console (a serial line, a small screen): wrapping, and the
/// tables of `aibox status`, `workers` and `events`. Every line it gives fits `width`.
public enum TextLayout {
    public static let width = 80

    /// `text` in lines of at most `width` columns, broken at spaces and its own line ends (a
    /// word longer than a line is cut across lines: nothing is lost): the first line after
    /// `first`, the others after `then`.
    public static func wrap(_ text: String, width: Int = width, first: String = "", then: String = "") -> [String] {
        var lines: [String] = []
        var line = first
        var fresh = true
        for (n, paragraph) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if n > 0 {
                lines.append(line)
                line = then
                fresh = true
            }
            wrap(paragraph, width: width, then: then, into: &lines, line: &line, fresh: &fresh)
        }
        lines.append(line)
        return lines
    }

    private static func wrap(
        _ text: Substring, width: Int, then: String, into lines: inout [String], line: inout String, fresh: inout Bool
    ) {
        for word in text.split(separator: " ") {
            if !fresh && line.count + 1 + word.count > width {
                lines.append(line)
                line = then
                fresh = true
            }
            line += (fresh ? "" : " ") + word
            fresh = false
            while line.count > width {
                lines.append(String(line.prefix(width)))
                line = then + line.dropFirst(width)
            }
        }
    }

    /// `label` in a column of `labelWidth`, then `value`, wrapped under itself: `status`'s lines.
    public static func labelled(_ label: String, _ value: String, labelWidth: Int = 11, width: Int = width) -> [String] {
        wrap(value, width: width, first: pad(label, labelWidth), then: String(repeating: " ", count: labelWidth))
    }

    /// The workers as `aibox status` and `aibox workers` show them: NAME, STATE, PID, RESTARTS
    /// and LAST EXIT in columns; the detail (why a worker is parked, quarantined, waiting; its
    /// status line) after them when it fits, else on the lines below, indented by 4. A name
    /// too long for its column gets a line of its own.
    public static func workerTable(_ workers: [WorkerView], width: Int = width) -> [String] {
        let header = ["NAME", "STATE", "PID", "RESTARTS", "LAST EXIT"]
        let rows = workers.map { w -> [String] in
            var last = "-"
            if let e = w.lastExit {
                last = e.code.map { "code \($0)" } ?? e.signal.map { Signals.name(of: $0) } ?? "-"
            }
            return [w.name, w.state, w.pid.map(String.init) ?? "-", String(w.restarts), last]
        }
        var widths = header.map(\.count)
        for r in rows { for (i, c) in r.enumerated() { widths[i] = max(widths[i], c.count) } }
        let others = widths.dropFirst().reduce(0, +) + 2 * (widths.count - 1)
        widths[0] = max(header[0].count, min(widths[0], width - others - 2))
        func line(_ cells: [String]) -> String { zip(cells, widths).map { pad($0, $1) }.joined(separator: "  ") }
        let head = line(header)
        var out = [head.count + 8 <= width ? head + "  DETAIL" : trimmed(head)]
        for (w, r) in zip(workers, rows) {
            var cells = r
            if r[0].count > widths[0] {
                out += wrap(r[0], width: width)
                cells[0] = ""
            }
            let columns = line(cells)
            let detail = w.reason ?? w.status ?? ""
            if detail.isEmpty {
                out.append(trimmed(columns))
            } else if columns.count + 2 + detail.count <= width {
                out.append(columns + "  " + detail)
            } else {
                out.append(trimmed(columns))
                out += wrap(detail, width: width, first: "    ", then: "    ")
            }
        }
        return out
    }

    /// One event as `aibox events` shows it.
    public struct EventRow: Sendable, Equatable {
        public var time: String
        public var kind: String
        public var worker: String
        public var message: String

        public init(time: String, kind: String, worker: String, message: String) {
            self.time = time
            self.kind = kind
            self.worker = worker
            self.message = message
        }
    }

    /// Events in aligned columns — time, kind, worker, then the message, wrapped under its own
    /// column. When the kinds and names shown leave the message fewer than 28 columns, each
    /// event's message goes on the lines below its columns, indented by 4 (and, should even
    /// time, kind and worker not fit one line, the worker goes there too: `worker: message`).
    public static func events(_ rows: [EventRow], width: Int = width) -> [String] {
        let timeW = rows.map(\.time.count).max() ?? 0
        let kindW = rows.map(\.kind.count).max() ?? 0
        let workerW = rows.map(\.worker.count).max() ?? 0
        let messageColumn = timeW + 2 + kindW + 2 + workerW + 2
        var out: [String] = []
        if messageColumn <= width - 28 {
            let indent = String(repeating: " ", count: messageColumn)
            for r in rows {
                let first = pad(r.time, timeW) + "  " + pad(r.kind, kindW) + "  " + pad(r.worker, workerW) + "  "
                out += wrap(r.message, width: width, first: first, then: indent).map(trimmed)
            }
        } else if messageColumn - 2 <= width {
            for r in rows {
                out.append(trimmed(pad(r.time, timeW) + "  " + pad(r.kind, kindW) + "  " + r.worker))
                if !r.message.isEmpty { out += wrap(r.message, width: width, first: "    ", then: "    ") }
            }
        } else {
            let kindRoom = max(1, width - timeW - 2)
            for r in rows {
                out.append(pad(r.time, timeW) + "  " + fitColumns(r.kind, width: kindRoom))
                out += wrap(r.worker + ": " + r.message, width: width, first: "    ", then: "    ")
            }
        }
        return out
    }

    static func pad(_ s: String, _ width: Int) -> String {
        s.count >= width ? s : s + String(repeating: " ", count: width - s.count)
    }

    static func trimmed(_ s: String) -> String {
        var t = Substring(s)
        while t.last == " " { t = t.dropLast() }
        return String(t)
    }
}
