import Glibc

/// The one way AIBox writes a file that must survive a power cut: written under a temporary
/// name beside it, fsynced, then put in place by rename (or by link, when the name must not
/// exist yet), and the directory fsynced. At any instant the path holds the old file or the
/// new one, never a part of one; a failure or an abandoned write leaves nothing behind.
///
/// The temporary name is fixed (`PATH.aibox-new`), so that what a power cut left there is
/// replaced by the next write instead of piling up; it is created with O_EXCL and O_NOFOLLOW,
/// so a symlink or FIFO planted there fails the write instead of redirecting or blocking it,
/// and two writers of one path at once make one of them fail rather than mix their bytes.
public final class AtomicFile {
    /// Replace whatever is at the path, or create a file that must not exist yet.
    public enum Placement: Sendable { case replace, createNew }

    public let path: String
    public let temporary: String
    let placement: Placement
    private var fd: Int32
    private var placed = false
    private var abandoned = false

    public static let suffix = ".aibox-new"

    /// Opens the temporary file with exactly `mode` (the umask does not apply).
    public init(_ path: String, mode: mode_t, placement: Placement = .replace) throws(SystemError) {
        self.path = path
        self.temporary = path + AtomicFile.suffix
        self.placement = placement
        let tmp = temporary
        // Left by a power cut or a failed writer: only a regular file or a link is removed
        // (anything else, or a failed removal, makes the O_EXCL open below fail and say so).
        if let st = try? fileStatus(tmp, followSymlinks: false), st.st_mode & S_IFMT == S_IFREG || st.st_mode & S_IFMT == S_IFLNK {
            removeFileBestEffort(tmp)
        }
        fd = try syscall("open", detail: tmp) {
            Glibc.open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, mode)
        }
        do {
            try syscall("fchmod", detail: tmp) { fchmod(fd, mode) }
        } catch {
            abandon()
            throw error
        }
    }

    deinit { if !placed && !abandoned { abandon() } }

    public func write(_ bytes: UnsafeRawBufferPointer) throws(SystemError) {
        precondition(fd >= 0, "write after finish or abandon")
        do {
            try writeAll(fd, bytes)
        } catch {
            abandon()
            throw error
        }
    }

    public func write(_ bytes: [UInt8]) throws(SystemError) {
        precondition(fd >= 0, "write after finish or abandon")
        do {
            try writeAll(fd, bytes)
        } catch {
            abandon()
            throw error
        }
    }

    /// The bytes are on the disk under the temporary name (fsync, close); `place()` puts them
    /// at the path. Several files staged this way can be placed together (FileTransaction).
    public func finish() throws(SystemError) {
        guard fd >= 0 else { return }
        do {
            try syscall("fsync", detail: temporary) { fsync(fd) }
        } catch {
            abandon()
            throw error
        }
        closeDescriptor(fd)
        fd = -1
    }

    /// Puts the finished file at the path; the directory is not synced (`commit` does that).
    public func place() throws(SystemError) {
        try finish()
        switch placement {
        case .replace:
            do {
                try syscall("rename", detail: path) { rename(temporary, path) }
            } catch {
                abandon()
                throw error
            }
        case .createNew:
            do {
                try syscall("link", detail: path) { link(temporary, path) }
                // Placed under both names: the temporary one goes; one left by a power cut here
                // is replaced by the next write.
                removeFileBestEffort(temporary)
            } catch {
                // File systems without hard links (vfat): the caller checked the name was free.
                let e = error.errno
                guard e == EPERM || e == EOPNOTSUPP || e == ENOSYS,
                    (try? syscall("rename", detail: path) { rename(temporary, path) }) != nil
                else {
                    abandon()
                    throw error
                }
            }
        }
        placed = true
    }

    /// finish, place, and the directory synced: the one call for a single file.
    public func commit() throws(SystemError) {
        try place()
        syncDirectory(parentDirectory(path))
    }

    /// Removes the temporary file; the path is untouched.
    public func abandon() {
        if fd >= 0 {
            closeDescriptor(fd)
            fd = -1
        }
        if !placed && !abandoned { removeFileBestEffort(temporary) }
        abandoned = true
    }
}

/// Replaces `path` with `bytes` through `AtomicFile`.
public func writeFileAtomically(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644) throws(SystemError) {
    let file = try AtomicFile(path, mode: mode)
    try file.write(bytes)
    try file.commit()
}

/// fsync of a directory, so that a rename or unlink in it survives a power cut. A failure is
/// not reported: the change is made and seen, and a power cut can at worst undo it whole.
public func syncDirectory(_ path: String) {
    guard let fd = try? syscall("open", detail: path, { open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }) else { return }
    _ = try? syscall("fsync", detail: path) { fsync(fd) }
    closeDescriptor(fd)
}
