import AIBoxCore
import CAIBoxOS
import Crypto
import Glibc

// First boot on disk: the journal of the interactive setup, so a power cut resumes it.

/// Each finished step of the interactive setup, in SQLite (`setup_journal`): a power cut
/// resumes at the first unfinished step with the earlier answers as defaults. Secret answers
/// are journaled by name; their values wait in `var/lib/aibox/setup/` (a `SecretStore`).
public final class SetupJournal {
    let db: SQLiteConnection

    public init(path: String) throws(SQLiteError) {
        // Beside the daemon's writes: wait for them rather than fail.
        db = try Store.connect(path, busyTimeoutMilliseconds: 2000)
        _ = try Schema.migrate(db)
    }

    public func load() -> [WizardStepRecord] {
        guard let rows = try? db.query("SELECT step, key, kind, value FROM setup_journal ORDER BY ordinal, position") else { return [] }
        var records: [WizardStepRecord] = []
        for r in rows {
            guard let step = r[0].string.flatMap(SetupStep.init(rawValue:)), let key = r[1].string, let kind = r[2].string else { continue }
            let text = r[3].string ?? ""
            let value: WizardAnswer.Value
            switch kind {
            case "text": value = .text(text)
            case "skipped": value = .skipped
            case "secret": value = .secret(name: text)
            case "password-hash": value = .passwordHash(text)
            default: continue
            }
            if records.last?.step != step { records.append(WizardStepRecord(step: step, answers: [])) }
            records[records.count - 1].answers.append(WizardAnswer(key: key, value: value))
        }
        return records
    }

    /// Replaces the journaled answers of `record.step`, in one transaction.
    public func save(_ record: WizardStepRecord) throws(SQLiteError) {
        try db.transaction { () throws(SQLiteError) in
            try db.query("DELETE FROM setup_journal WHERE step = ?", [.text(record.step.rawValue)])
            for (i, a) in record.answers.enumerated() {
                let (kind, value): (String, String?)
                switch a.value {
                case .text(let t): (kind, value) = ("text", t)
                case .skipped: (kind, value) = ("skipped", nil)
                case .secret(let name): (kind, value) = ("secret", name)
                case .passwordHash(let h): (kind, value) = ("password-hash", h)
                }
                try db.query(
                    "INSERT INTO setup_journal(step, ordinal, position, key, kind, value) VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        .text(record.step.rawValue), .integer(Int64(record.step.number)), .integer(Int64(i)), .text(a.key), .text(kind),
                        SQLiteValue(value),
                    ])
            }
        }
    }

    public func clear() throws(SQLiteError) { try db.query("DELETE FROM setup_journal") }

    /// An event row, as the daemon writes them (`aibox events` shows both).
    public func record(_ kind: String, _ message: String) {
        _ = try? db.query(
            "INSERT INTO events(at, kind, worker, message) VALUES (?, ?, NULL, ?)",
            [.integer(Clock.wallMilliseconds()), .text(kind), .text(message)])
    }
}
