package vmm

import (
	"errors"

	"github.com/ember-vmm/ember/internal/mmds"
	"github.com/ember-vmm/ember/internal/strictjson"
)

type mmdsStore = *mmds.Store

// MMDSValue is the metadata store's content as an answer; a null store is
// answered as {} (Firecracker's success_response_with_mmds_value).
type MMDSValue struct{ Value strictjson.Value }

func mmdsError(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, mmds.ErrLimitExceeded) {
		return wrap("MMDS limit exceeded error", err)
	}
	return wrap("MMDS error", err)
}
