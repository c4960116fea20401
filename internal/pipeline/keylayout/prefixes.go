package keylayout

// LegacyPrefixes are the top-level prefixes of the flat layout, one per kind:
// uploaded/ (originals), restored/, thumbnails/, animated/ and meta/. Listing
// them lists every legacy object.
var LegacyPrefixes = []string{"uploaded/", "restored/", "thumbnails/", "animated/", "meta/"}
