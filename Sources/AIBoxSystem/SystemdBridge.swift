import CSystemd
import Glibc

/// sd_notify(3) from libsystemd.
func sdNotify(_ text: String) -> Int32 {
    sd_notify(0, text)
}

/// Journal output for workers through libsystemd.
public enum Journal {
    /// True when journald's socket is there to write to.
    public static var isAvailable: Bool {
        fileExists("/run/systemd/journal/stdout")
    }

    /// A stream descriptor connected to journald (sd_journal_stream_fd): what the worker
    /// writes there becomes journal entries with SYSLOG_IDENTIFIER=name, straight from the
    /// worker, with no copy through the daemon.
    public static func streamFD(identifier: String, priority: Int32) -> Int32 {
        sd_journal_stream_fd(identifier, priority, 0)
    }
}
