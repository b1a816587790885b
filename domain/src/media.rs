//! Media rules: what may be uploaded for what, how large, and what a file really is.
//!
//! A client declares a content type and a size when it asks to upload; neither is trusted.
//! Once the object is in the store, its first bytes say what it is ([`sniff`]: the formats'
//! own signatures), and that must be what was declared and what the purpose allows.

use std::fmt;

/// What an upload is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    BusinessLogo,
    BusinessPhoto,
    EventCover,
    OnboardingVideo,
}

impl Purpose {
    pub const ALL: [Purpose; 4] = [
        Self::BusinessLogo,
        Self::BusinessPhoto,
        Self::EventCover,
        Self::OnboardingVideo,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::BusinessLogo => "business_logo",
            Self::BusinessPhoto => "business_photo",
            Self::EventCover => "event_cover",
            Self::OnboardingVideo => "onboarding_video",
        }
    }

    /// The kinds of file it takes.
    pub fn accepts(self, kind: MediaType) -> bool {
        match self {
            Self::OnboardingVideo => kind == MediaType::Mp4,
            _ => kind.is_image(),
        }
    }

    /// The largest file it takes, in bytes: a phone photo is a few megabytes; a welcome
    /// video of a minute or two in 1080p stays under 200 MB.
    pub fn max_bytes(self) -> u64 {
        match self {
            Self::OnboardingVideo => 200 * 1024 * 1024,
            _ => 10 * 1024 * 1024,
        }
    }

    /// Whether a newer upload of this purpose replaces the older one (a business has one
    /// logo, an event one cover, the app one welcome video; photos add up).
    pub fn is_single(self) -> bool {
        !matches!(self, Self::BusinessPhoto)
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

crate::parse_by_name!(Purpose);

/// The file formats we take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaType {
    Jpeg,
    Png,
    Webp,
    Mp4,
}

impl MediaType {
    pub const ALL: [MediaType; 4] = [Self::Jpeg, Self::Png, Self::Webp, Self::Mp4];

    /// The MIME type.
    pub fn mime(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Webp => "image/webp",
            Self::Mp4 => "video/mp4",
        }
    }

    pub fn from_mime(mime: &str) -> Option<Self> {
        let mime = mime.split(';').next().unwrap_or_default().trim();
        Self::ALL
            .into_iter()
            .find(|t| t.mime().eq_ignore_ascii_case(mime))
    }

    pub fn is_image(self) -> bool {
        !matches!(self, Self::Mp4)
    }
}

/// Bytes [`sniff`] needs from the start of a file.
pub const SNIFF_BYTES: u64 = 16;

/// What a file is, by the signature its format puts at its start: JPEG `FF D8 FF`; PNG
/// `89 50 4E 47 0D 0A 1A 0A`; WebP `RIFF····WEBP`; MP4 (ISO base media) an `ftyp` box
/// first, so `ftyp` at offset 4. `None` for anything else.
pub fn sniff(head: &[u8]) -> Option<MediaType> {
    if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(MediaType::Jpeg)
    } else if head.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        Some(MediaType::Png)
    } else if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        Some(MediaType::Webp)
    } else if head.len() >= 8 && &head[4..8] == b"ftyp" {
        Some(MediaType::Mp4)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_known_by_their_signatures_not_their_names() {
        assert_eq!(
            sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F']),
            Some(MediaType::Jpeg)
        );
        assert_eq!(
            sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            Some(MediaType::Png)
        );
        assert_eq!(sniff(b"RIFF\x24\0\0\0WEBPVP8 "), Some(MediaType::Webp));
        assert_eq!(sniff(b"\0\0\0\x20ftypisom"), Some(MediaType::Mp4));
        assert_eq!(sniff(b"<html><script>"), None, "a page dressed as a photo");
        assert_eq!(sniff(b"GIF89a"), None, "not a format we take");
        assert_eq!(sniff(b"\xFF\xD8"), None, "too short to tell");
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn purposes_take_their_own_kinds_and_sizes() {
        assert!(Purpose::BusinessLogo.accepts(MediaType::Png));
        assert!(!Purpose::BusinessLogo.accepts(MediaType::Mp4));
        assert!(Purpose::OnboardingVideo.accepts(MediaType::Mp4));
        assert!(!Purpose::OnboardingVideo.accepts(MediaType::Jpeg));
        assert!(Purpose::OnboardingVideo.max_bytes() > Purpose::EventCover.max_bytes());
        assert!(Purpose::BusinessLogo.is_single() && !Purpose::BusinessPhoto.is_single());
        for p in Purpose::ALL {
            assert_eq!(p.as_str().parse::<Purpose>().unwrap(), p);
        }
        assert_eq!(
            MediaType::from_mime("IMAGE/PNG; charset=binary"),
            Some(MediaType::Png)
        );
        assert_eq!(MediaType::from_mime("image/gif"), None);
    }
}
