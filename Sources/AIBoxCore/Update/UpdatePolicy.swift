// Update bundles, pure part: whether a verified bundle may be installed on this box
// (compatible string, version floor, signed rollbacks).

/// Why a verified bundle may be installed.
public enum UpdateDecision: String, Sendable, Equatable {
    /// Newer than the floor, or the box has no floor yet.
    case install
    /// The same version as the floor (build metadata aside): installed again, e.g. to repair a slot.
    case reinstall
    /// Older than the floor, and the bundle is signed as a rollback.
    case rollback
}

/// Why a verified bundle is not installed on this box.
public struct UpdateRefusal: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Reason: String, Sendable, Equatable {
        case incompatible
        case downgrade
        /// The floor file cannot be read: only a signed rollback passes.
        case floorUnknown
    }
    public var reason: Reason
    public var message: String
    public var description: String { message }
}

/// The checks made on a verified manifest before a slot is touched.
public enum UpdatePolicy {
    /// `compatible` must equal the box's (exactly, case included). A version below `floor`
    /// (the lowest version the box still accepts, kept in its database) is refused unless
    /// the manifest's signed `rollback = true` allows it; the same version is a reinstall.
    public static func check(_ manifest: BundleManifest, compatible: String, floor: SemanticVersion?) -> Result<
        UpdateDecision, UpdateRefusal
    > {
        if manifest.compatible != compatible {
            return .failure(
                UpdateRefusal(
                    reason: .incompatible,
                    message:
                        "the bundle is for \(quoted(manifest.compatible)), this box is \(quoted(compatible)) (compatible in system.toml): it was not installed"
                ))
        }
        guard let floor else { return .success(.install) }
        if manifest.version > floor { return .success(.install) }
        if manifest.version == floor { return .success(.reinstall) }
        if manifest.rollback { return .success(.rollback) }
        return .failure(
            UpdateRefusal(
                reason: .downgrade,
                message:
                    "version \(manifest.version) is older than \(floor), the lowest version this box accepts: an older version is installed only from a bundle signed as a rollback (aibox bundle create --rollback)"
            ))
    }

    /// The same against the floor as read (file and database). A floor that cannot be read
    /// refuses every bundle but one signed as a rollback (which any floor lets through): the
    /// box does not know the oldest version it may take, and a guess could allow a downgrade.
    public static func check(_ manifest: BundleManifest, compatible: String, floor: VersionFloor) -> Result<
        UpdateDecision, UpdateRefusal
    > {
        switch floor.effective {
        case .success(let known): return check(manifest, compatible: compatible, floor: known)
        case .failure(let why):
            if case .failure(let refusal) = check(manifest, compatible: compatible, floor: nil) { return .failure(refusal) }
            if manifest.rollback { return .success(.rollback) }
            return .failure(
                UpdateRefusal(
                    reason: .floorUnknown,
                    message:
                        "the version floor cannot be read (\(why)): this box does not know the oldest version it may install, so it takes only a bundle signed as a rollback until a commit writes the floor again (aibox update mark-good) or the file is removed by hand"
                ))
        }
    }
}
