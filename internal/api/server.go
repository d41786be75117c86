// Package api is Firecracker's REST API on top of ember's controller: it
// turns each HTTP request into a controller action with Firecracker's
// routing, strict decoding and error texts, and turns the outcome into
// Firecracker's answer (204, 200 with compact JSON, or 400/413 with a
// fault_message). It logs and counts every request the way Firecracker does,
// since test harnesses wait for those lines.
package api

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/ember-vmm/ember/internal/logger"
	"github.com/ember-vmm/ember/internal/metrics"
	"github.com/ember-vmm/ember/internal/microhttp"
	"github.com/ember-vmm/ember/internal/mmds"
	"github.com/ember-vmm/ember/internal/strictjson"
	"github.com/ember-vmm/ember/internal/vmm"
)

// Controller is what the API needs from the VMM.
type Controller interface {
	Handle(ctx context.Context, a vmm.Action) (any, error)
}

// Handler serves Firecracker's API. It implements microhttp.Handler.
type Handler struct {
	ctrl    Controller
	log     logger.Log
	metrics *metrics.Metrics
}

// NewHandler returns the API handler; log should be the "fc_api" thread.
func NewHandler(ctrl Controller, log logger.Log, m *metrics.Metrics) *Handler {
	return &Handler{ctrl: ctrl, log: log, metrics: m}
}

// ServeRequest handles one request.
func (h *Handler) ServeRequest(req *microhttp.Request) *microhttp.Response {
	start := time.Now()
	resp := h.serve(req, start)
	h.log.Debugf("Total previous API call duration: %d us.", time.Since(start).Microseconds())
	return resp
}

func (h *Handler) serve(req *microhttp.Request, start time.Time) *microhttp.Response {
	h.log.Infof("The API server received a %s.", h.describe(req))
	p, perr := parse(req.Method, req.Path, req.Body, h.metrics)
	if perr != nil {
		h.log.Errorf("%s", perr.debug)
		return faultResponse(400, perr.msg)
	}
	latency, what := latencyOf(p.action, h.metrics)
	data, err := h.ctrl.Handle(context.Background(), p.action)
	resp := h.respond(data, err)
	if err == nil && latency != nil {
		us := uint64(time.Since(start).Microseconds())
		latency.Set(us)
		h.log.Infof("'%s' API request took %d us.", what, us)
	}
	if p.deprecation != "" {
		h.log.Warnf("%s", p.deprecation)
		resp.Deprecation = true
	}
	return resp
}

// latencyOf names the actions whose API latency Firecracker records.
func latencyOf(a vmm.Action, m *metrics.Metrics) (*metrics.Gauge, string) {
	switch a := a.(type) {
	case vmm.CreateSnapshot:
		if a.Params.SnapshotType == "Diff" {
			return &m.Latencies.DiffCreateSnapshot, "create diff snapshot"
		}
		return &m.Latencies.FullCreateSnapshot, "create full snapshot"
	case vmm.LoadSnapshot:
		return &m.Latencies.LoadSnapshot, "load snapshot"
	case vmm.Pause:
		return &m.Latencies.PauseVM, "pause vm"
	case vmm.Resume:
		return &m.Latencies.ResumeVM, "resume vm"
	}
	return nil, ""
}

func (h *Handler) respond(data any, err error) *microhttp.Response {
	if err != nil {
		if errors.Is(err, mmds.ErrLimitExceeded) {
			h.log.Errorf("Received Error. Status code: 413 Payload too large. Message: %s", err)
			return faultResponse(413, err.Error())
		}
		h.log.Errorf("Received Error. Status code: 400 Bad Request. Message: %s", err)
		return faultResponse(400, err.Error())
	}
	if data == nil {
		h.log.Infof("The request was executed successfully. Status code: 204 No Content.")
		return &microhttp.Response{Status: 204}
	}
	var body []byte
	if v, ok := data.(vmm.MMDSValue); ok {
		if v.Value.IsNull() {
			body = []byte("{}")
		} else {
			body = v.Value.Compact()
		}
	} else {
		body, err = strictjson.Marshal(data)
	}
	if err != nil {
		h.log.Errorf("Received Error. Status code: 400 Bad Request. Message: %s", err)
		return faultResponse(400, err.Error())
	}
	h.log.Infof("The request was executed successfully. Status code: 200 OK.")
	return &microhttp.Response{Status: 200, Body: body}
}

type fault struct {
	FaultMessage string `json:"fault_message"`
}

func faultResponse(status int, msg string) *microhttp.Response {
	body, err := strictjson.Marshal(fault{FaultMessage: msg})
	if err != nil {
		body = []byte(`{"fault_message":` + strconv.Quote(msg) + `}`)
	}
	return &microhttp.Response{Status: status, Body: body}
}

// describe renders a request as Firecracker's log line does:
// `Put request on "/drives/rootfs" with body "..."`; MMDS bodies are never
// logged and a CPU template only at Debug level.
func (h *Handler) describe(req *microhttp.Request) string {
	s := fmt.Sprintf("%s request on %s", methodDebug(req.Method), rustDebugString(req.Path))
	switch {
	case req.Body == nil || req.Path == "/mmds":
	case req.Path == "/cpu-config" && !h.log.Enabled(logger.Debug):
		s += ". To view the CPU template received by the API, configure log-level to DEBUG"
	default:
		b := "inconvertible to UTF-8"
		if utf8.Valid(req.Body) {
			b = string(req.Body)
		}
		s += " with body " + rustDebugString(b)
	}
	return s
}

// rustDebugString quotes s as Rust's Debug for str does.
func rustDebugString(s string) string { return strictjson.RustDebugString(s) }
