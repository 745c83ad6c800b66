import Testing

@testable import AIBoxCore

/// The version a booted slot reports comes from its os-release (image/build stamps it).
@Suite struct ImageStampTests {
    @Test func readsImageVersionPlainAndQuoted() {
        let debian = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID=\"12\"\nID=debian\n"
        #expect(ImageStamp.version(osRelease: debian + "IMAGE_ID=aibox\nIMAGE_VERSION=1.2.3\n")?.description == "1.2.3")
        #expect(ImageStamp.version(osRelease: debian + "IMAGE_VERSION=\"1.1.0-rc.1\"\n")?.description == "1.1.0-rc.1")
        #expect(ImageStamp.version(osRelease: "IMAGE_VERSION='2.0.0'\r\n")?.description == "2.0.0")
    }

    @Test func noStampOrNoSemanticVersionIsNil() {
        #expect(ImageStamp.version(osRelease: "ID=debian\nVERSION_ID=\"12\"\n") == nil, "VERSION_ID is Debian's, not the image's")
        #expect(ImageStamp.version(osRelease: "IMAGE_VERSION=twelve\n") == nil)
        #expect(ImageStamp.version(osRelease: "IMAGE_VERSION=\n") == nil)
        #expect(ImageStamp.version(osRelease: "") == nil)
    }
}
