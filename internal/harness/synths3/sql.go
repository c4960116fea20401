package synths3

import (
	"fmt"
	"strings"

	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
)

// The keyspace in SQL: the same pure functions as keyspace.go, written as
// Postgres expressions over generate_series, so that the loader writes 10^7
// photos' rows without a round trip per row. Every key is built from the Go
// builders themselves (sqlKey), never written out twice; every hash, slice
// and threshold below mirrors a line of keyspace.go, and the tests compare
// the rows with the endpoint object for object.

// sqlKey turns a key built with placeholder arguments ("\x00name\x00") into
// a SQL concatenation of its literal parts and those columns.
func sqlKey(built string) string {
	parts := strings.Split(built, "\x00")
	var out []string
	for i, p := range parts {
		switch {
		case i%2 == 1:
			out = append(out, p)
		case p != "":
			out = append(out, sqlString(p))
		}
	}
	return strings.Join(out, " || ")
}

func sqlString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// col is the placeholder of a column in a key built for sqlKey.
func col(name string) string { return "\x00" + name + "\x00" }

// sqlU16 is per10k of hash bytes k, k+1.
func sqlU16(h string, k int) string {
	return fmt.Sprintf("(((get_byte(%s, %d) * 256 + get_byte(%s, %d)) * 10000) >> 16)", h, k, h, k+1)
}

// sqlPer100 is per100 of hash byte k.
func sqlPer100(h string, k int) string { return fmt.Sprintf("((get_byte(%s, %d) * 100) >> 8)", h, k) }

// sqlU32 is the big-endian uint32 of hash bytes 0-3.
func sqlU32(h string) string {
	return fmt.Sprintf("((get_byte(%[1]s, 0)::bigint << 24) | (get_byte(%[1]s, 1) << 16) | (get_byte(%[1]s, 2) << 8) | get_byte(%[1]s, 3))", h)
}

// sqlUUIDOf formats a 32-digit hex string as a UUID (uuidOf).
func sqlUUIDOf(hx string) string {
	return fmt.Sprintf("(substr(%[1]s, 1, 8) || '-' || substr(%[1]s, 9, 4) || '-' || substr(%[1]s, 13, 4) || '-' || substr(%[1]s, 17, 4) || '-' || substr(%[1]s, 21, 12))", hx)
}

// sqlExt maps a weight (0-99) to an extension or its content type
// (extensions).
func sqlExt(v string, contentType bool) string {
	var b strings.Builder
	b.WriteString("(CASE")
	for _, e := range extensions {
		val := e.ext
		if contentType {
			val = e.contentType
		}
		fmt.Fprintf(&b, " WHEN %s < %d THEN %s", v, e.below, sqlString(val))
	}
	b.WriteString(" END)")
	return b.String()
}

// sqlID is a photo or owner id of number n, as text (idText) or as the
// photos column's type.
func (ks *Keyspace) sqlID(n, uuidPrefix string, typed bool) string {
	if ks.cfg.IDType == IDUUID {
		e := fmt.Sprintf("(%s || lpad(to_hex(%s), 12, '0'))", sqlString(uuidPrefix), n)
		if typed {
			return e + "::uuid"
		}
		return e
	}
	if typed {
		return n
	}
	return "(" + n + ")::text"
}

// sqlPhotos is a query of one row per photo i in [$1, $2), with the columns
// every statement of the loader reads: i, n, h (the photo hash), job, pid
// (text), pid_t (typed), oid (text, NULL when ownerless), oid_t, ownerless,
// the legacy key columns orig, proc, thumb, the user-scoped ones uorig,
// uproc, uthumb, created, and the animations' ids and suffixes aid0, aid1,
// sfx0, sfx1 (NULL when the photo has fewer). Each level adds columns
// to the one below; OFFSET 0 keeps Postgres from folding a level into the
// next, which would compute the hashes once per use instead of once.
func (ks *Keyspace) sqlPhotos() string {
	n := ks.cfg.Photos
	return fmt.Sprintf(`
SELECT p.*,
       %[1]s AS orig,
       CASE WHEN p.has_restored THEN %[2]s END AS proc,
       CASE WHEN p.has_thumb THEN %[3]s END AS thumb,
       CASE WHEN NOT p.ownerless THEN %[4]s END AS uorig,
       CASE WHEN NOT p.ownerless AND p.has_restored THEN %[5]s END AS uproc,
       CASE WHEN NOT p.ownerless AND p.has_thumb THEN %[6]s END AS uthumb,
       %[36]s AS aid0, %[37]s AS aid1, %[38]s AS sfx0, %[39]s AS sfx1
  FROM (
SELECT p.*,
       lpad(to_hex(p.head >> 16), 8, '0') || '-' || lpad(to_hex(p.head & 65535), 4, '0') || '-4000-8000-' || lpad(to_hex(p.n), 12, '0') AS job,
       %[7]s AS pid, %[8]s AS pid_t,
       CASE WHEN NOT p.ownerless THEN %[9]s END AS oid, CASE WHEN NOT p.ownerless THEN %[10]s END AS oid_t,
       %[11]s AS ext, %[12]s AS ctype, %[13]s AS rext, %[14]s AS rctype, %[15]s AS rid,
       TIMESTAMPTZ '2021-01-01 00:00:00+00' + (%[16]s %% %[17]d) * INTERVAL '1 second' AS created,
       CASE WHEN p.anims >= 1 THEN md5('km:anim:' || p.n || ':0') END AS a0hx,
       CASE WHEN p.anims >= 2 THEN md5('km:anim:' || p.n || ':1') END AS a1hx
  FROM (
SELECT p.*,
       %[23]s < %[24]d AS has_restored,
       %[23]s < %[24]d AND %[34]s < %[35]d AS has_orphan,
       %[25]s < %[26]d AS has_thumb,
       %[27]s < %[28]d AS has_meta,
       CASE WHEN %[29]s < %[30]d THEN 1 WHEN %[29]s < %[31]d THEN 2 ELSE 0 END AS anims,
       %[32]s < %[33]d AS ownerless,
       get_byte(p.h, 15) AS sfx
  FROM (
SELECT p.*, decode(p.hx, 'hex') AS h
  FROM (
SELECT g.i, g.i + 1 AS n, md5('km:' || (g.i + 1)) AS hx,
       (%[18]d * g.i + %[19]d) %% %[20]d * %[21]d AS head,
       ((g.i + 1) * 2654435761) %% 4294967296 %% %[22]d + 1 AS owner_no
  FROM generate_series($1::bigint, $2::bigint - 1) AS g(i) OFFSET 0) p OFFSET 0) p OFFSET 0) p OFFSET 0) p`,
		sqlKey(legacyOriginalKey(col("p.job"), col("p.ext"))),
		sqlKey(legacyRestoredKey(col("p.job"), col("p.rid"), col("p.rext"))),
		sqlKey(legacyThumbnailKey(col("p.job"))),
		sqlKey(keylayout.OriginalKey(col("p.oid"), col("p.pid"), col("p.ext"))),
		sqlKey(keylayout.RestoredKey(col("p.oid"), col("p.pid"), col("p.rext"))),
		sqlKey(keylayout.ThumbnailKey(col("p.oid"), col("p.pid"))),
		ks.sqlID("p.n", PhotoUUIDPrefix, false), ks.sqlID("p.n", PhotoUUIDPrefix, true),
		ks.sqlID("p.owner_no", OwnerUUIDPrefix, false), ks.sqlID("p.owner_no", OwnerUUIDPrefix, true),
		sqlExt(sqlPer100("p.h", 12), false), sqlExt(sqlPer100("p.h", 12), true),
		sqlExt(sqlPer100("p.h", 13), false), sqlExt(sqlPer100("p.h", 13), true),
		sqlUUIDOf("p.hx"),
		sqlU32("p.h"), legacySpanSeconds,
		permA%n, ks.permB, n, ks.jobStep,
		ks.cfg.Owners,
		sqlU16("p.h", 0), RestoredPer10k,
		sqlU16("p.h", 2), ThumbnailPer10k,
		sqlU16("p.h", 4), MetadataPer10k,
		sqlU16("p.h", 6), OneAnimationPer10k, OneAnimationPer10k+TwoAnimationsPer10k,
		sqlU16("p.h", 10), OwnerlessPer10k,
		sqlU16("p.h", 8), OrphanPer10k,
		sqlUUIDOf("p.a0hx"), sqlUUIDOf("p.a1hx"), sqlSuffix(0), sqlSuffix(1),
	)
}

// sqlSuffix is the suffix of animation k (animationSuffix).
func sqlSuffix(k int) string {
	return fmt.Sprintf("(ARRAY['%s'])[((p.sfx >> %d) & 3) + 1]", strings.Join(animationSuffixes, "','"), 2*k)
}

// sqlObjects is a query of one row per object a photo with an owner moves
// (every slot but the orphan), over sqlPhotos: the photo's columns plus
// slot, kind, old_key, new_key, content_type, size, etag and checksum.
func (ks *Keyspace) sqlObjects() string {
	anim := func(k int) (string, string) {
		aid, suffix := fmt.Sprintf("p.aid%d", k), fmt.Sprintf("p.sfx%d", k)
		return sqlKey(keylayout.LegacyAnimationKey(col("p.job"), col(aid), col(suffix))),
			sqlKey(keylayout.AnimationKey(col("p.oid"), col("p.pid"), col(aid), col(suffix)))
	}
	a0old, a0new := anim(0)
	a1old, a1new := anim(1)
	kind := func(k keylayout.Kind) string { return sqlString(string(k)) }
	return fmt.Sprintf(`
SELECT o.*,
       %[1]d + %[2]s %% %[3]d AS size,
       '"' || o.khx || '"' AS etag,
       encode(substring(o.kh FROM 9 FOR 8), 'base64') AS checksum
  FROM (
SELECT o.*, decode(o.khx, 'hex') AS kh
  FROM (
SELECT p.*, s.slot, s.kind, s.old_key, s.new_key, s.content_type, md5(s.old_key) AS khx
  FROM (%[4]s OFFSET 0) p
 CROSS JOIN LATERAL (VALUES
       (%[5]d, %[17]s, p.orig, p.uorig, p.ctype, true),
       (%[6]d, %[18]s, p.proc, p.uproc, p.rctype, p.has_restored),
       (%[7]d, %[19]s, p.thumb, p.uthumb, 'image/jpeg', p.has_thumb),
       (%[8]d, %[20]s, %[9]s, %[10]s, 'application/json', p.has_meta),
       (%[11]d, %[21]s, %[12]s, %[13]s, 'video/mp4', p.anims >= 1),
       (%[14]d, %[21]s, %[15]s, %[16]s, 'video/mp4', p.anims >= 2)
       ) AS s(slot, kind, old_key, new_key, content_type, present)
 WHERE s.present AND NOT p.ownerless OFFSET 0) o OFFSET 0) o`,
		ks.cfg.MinSize, sqlU32("o.kh"), ks.cfg.MaxSize-ks.cfg.MinSize+1,
		ks.sqlPhotos(),
		SlotOriginal, SlotRestored, SlotThumbnail,
		SlotMetadata, sqlKey(keylayout.LegacyMetadataKey(col("p.job"))), sqlKey(keylayout.MetadataKey(col("p.oid"), col("p.pid"))),
		SlotAnimation0, a0old, a0new,
		SlotAnimation1, a1old, a1new,
		kind(keylayout.KindOriginal), kind(keylayout.KindRestored), kind(keylayout.KindThumbnail), kind(keylayout.KindMetadata), kind(keylayout.KindAnimation),
	)
}
