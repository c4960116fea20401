package synths3

import (
	"hash/crc64"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
)

func TestTheKeyspaceHasTheDocumentedProportions(t *testing.T) {
	t.Parallel()
	const n = 50_000
	ks, err := New(Config{Photos: n})
	require.NoError(t, err)
	slots := map[Slot]int{}
	infrequent := 0
	for i := range int64(n) {
		for _, o := range ks.Photo(i).Objects {
			slots[o.Slot]++
			if o.StorageClass == ClassInfrequent {
				infrequent++
			}
		}
	}
	tot := ks.Totals()
	share := func(v int) float64 { return float64(v) / n }
	// Three standard deviations of a share of 50,000 draws is under 0.7%.
	require.InDelta(t, RestoredPer10k/1e4, share(slots[SlotRestored]), 0.007)
	require.InDelta(t, ThumbnailPer10k/1e4, share(slots[SlotThumbnail]), 0.007)
	require.InDelta(t, MetadataPer10k/1e4, share(slots[SlotMetadata]), 0.007)
	require.InDelta(t, (OneAnimationPer10k+2*TwoAnimationsPer10k)/1e4, share(slots[SlotAnimation0]+slots[SlotAnimation1]), 0.01)
	require.InDelta(t, RestoredPer10k/1e4*OrphanPer10k/1e4, share(slots[SlotOrphan]), 0.003)
	require.InDelta(t, OwnerlessPer10k/1e4, float64(tot.Ownerless)/n, 0.003)
	require.InDelta(t, InfrequentPer100/100.0, share(infrequent), 0.005)
	require.InDelta(t, 3.38, float64(tot.Objects)/n, 0.02, "legacy objects a photo")
	require.InDelta(t, 3.35*0.95, float64(tot.Moves)/n, 0.02, "objects moved a photo")
}

func TestEveryKeyIsOfTheLayoutAndLeadsBackToItsObject(t *testing.T) {
	t.Parallel()
	for _, idType := range []IDType{IDBigint, IDUUID} {
		ks, err := New(Config{Photos: 3000, IDType: idType})
		require.NoError(t, err)
		prevJob := map[int64]string{}
		for i := range ks.Photos() {
			p := ks.Photo(i)
			require.NoError(t, keylayout.ValidateID(p.ID))
			back, ok := ks.photoIndex(p.ID)
			require.True(t, ok)
			require.Equal(t, i, back)
			prevJob[ks.rank(i)] = p.JobID
			for _, o := range p.Objects {
				l, err := keylayout.ParseLegacy(o.LegacyKey)
				require.NoError(t, err, o.LegacyKey)
				require.Equal(t, p.JobID, l.JobID)
				require.Equal(t, o.Kind, l.Kind)
				a, s, user, ok := ks.locate(o.LegacyKey)
				require.True(t, ok && !user && a.i == i && s == o.Slot, o.LegacyKey)
				if o.UserKey == "" {
					continue
				}
				// The key the worker derives is the keyspace's.
				derived, err := l.UserScoped(p.OwnerID, p.ID)
				require.NoError(t, err)
				require.Equal(t, derived, o.UserKey)
				a, s, user, ok = ks.locate(o.UserKey)
				require.True(t, ok && user && a.i == i && s == o.Slot, o.UserKey)
			}
		}
		// Jobs in rank order are in key order: the listing relies on it.
		for j := int64(1); j < ks.Photos(); j++ {
			require.Less(t, prevJob[j-1], prevJob[j])
		}
		_, _, _, ok := ks.locate("uploaded/00000000-0000-4000-8000-000000000001.jpg")
		require.False(t, ok, "a job id that is not the photo's")
	}
}

func TestCRC64NVMEIsTheStandardOne(t *testing.T) {
	t.Parallel()
	// The check value of CRC-64/NVME (the CRC catalogue).
	require.Equal(t, uint64(0xae8b14860a799888), crc64.Checksum([]byte("123456789"), crc64NVME))
}
