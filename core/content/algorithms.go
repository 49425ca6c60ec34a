package content

// go-digest only knows an algorithm once its hash is linked in; OCI allows
// sha256 and sha512, so every user of the content packages gets both.
import (
	_ "crypto/sha256"
	_ "crypto/sha512"
)
