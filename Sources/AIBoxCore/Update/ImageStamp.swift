/// The version stamped into an image: `IMAGE_VERSION=` in its os-release (image/build writes
/// the version it was given, the one the slot's bundle carries). The booted slot reports it,
/// so a slot shows the version of its bundle, not the aibox binary's own. Pure: the caller
/// reads the file.
public enum ImageStamp {
    /// IMAGE_VERSION's value (os-release quoting removed) when it is a semantic version.
    public static func version(osRelease text: String) -> SemanticVersion? {
        let key = "IMAGE_VERSION="
        for line in text.split(whereSeparator: \.isNewline) where line.hasPrefix(key) {
            var value = line.dropFirst(key.count)
            while value.last == " " || value.last == "\t" { value.removeLast() }
            if value.count >= 2, let q = value.first, q == "\"" || q == "'", value.last == q {
                value = value.dropFirst().dropLast()
            }
            return SemanticVersion(String(value))
        }
        return nil
    }
}
