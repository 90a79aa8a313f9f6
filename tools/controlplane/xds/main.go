// meshray-xds asks istiod for exactly the xDS it sends one Pod's sidecar (CDS, EDS, LDS, RDS)
// and prints it as one JSON document. It identifies itself the way istio-agent does: node ID
// sidecar~<podIP>~<pod>.<ns>~<ns>.svc.cluster.local and the node metadata istiod reads to find
// the Pod's labels, namespace and IPs.
//
// It is built inside the pinned istio.io/istio module (go build -overlay, see mk/mesh.mk), so
// it uses the same Envoy API and filter types as the istiod it talks to; every type those
// resources embed in Any fields is registered by importing istiod's own xDS package.
//
//	meshray-xds -addr 127.0.0.1:15010 -pod NAME -namespace NS -ip 10.244.0.1 \
//	  -labels '{"app":"x"}' [-type sidecar|router|waypoint] [-timeout 30s] > dump.json
//
// With -type ztunnel it asks, as ztunnel does (delta ADS, wildcard), for the ambient config:
// every istio.workload.Address (workloads and services) and istio.security.Authorization, and
// prints {"node", "addresses": [...], "authorizations": [...]}.
//
// With -cni-selectors FILE (istio-cni's chart values, ambient.enablementSelectors) it answers
// the istio-cni node agent's own question instead, for one pod: would it enrol the pod in ambient
// (redirect its traffic to ztunnel)? Input: -labels, -annotations, -namespace-labels. Output:
// {"enrolled": true|false}.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"sigs.k8s.io/yaml"

	cniutil "istio.io/istio/cni/pkg/util"
	_ "istio.io/istio/pilot/pkg/xds" // registers every filter/extension type istiod emits
	v3 "istio.io/istio/pilot/pkg/xds/v3"
	_ "istio.io/istio/pkg/workloadapi"          // istio.workload.Address
	_ "istio.io/istio/pkg/workloadapi/security" // istio.security.Authorization
)

type dump struct {
	Node      string            `json:"node"`
	Versions  map[string]string `json:"versions"`
	Clusters  []json.RawMessage `json:"clusters"`
	Endpoints []json.RawMessage `json:"endpoints"`
	Listeners []json.RawMessage `json:"listeners"`
	Routes    []json.RawMessage `json:"routes"`
}

func main() {
	addr := flag.String("addr", "127.0.0.1:15010", "istiod plaintext xDS address")
	pod := flag.String("pod", "", "pod name")
	ns := flag.String("namespace", "default", "pod namespace")
	ip := flag.String("ip", "", "pod IP")
	labels := flag.String("labels", "{}", "pod labels as a JSON object")
	sa := flag.String("service-account", "default", "pod service account")
	nodeType := flag.String("type", "sidecar", "sidecar, router, waypoint or ztunnel")
	timeout := flag.Duration("timeout", 30*time.Second, "overall time limit")
	cniSelectors := flag.String("cni-selectors", "", "istio-cni chart values file: answer its enrolment decision")
	annotations := flag.String("annotations", "{}", "pod annotations as a JSON object (-cni-selectors)")
	nsLabels := flag.String("namespace-labels", "{}", "namespace labels as a JSON object (-cni-selectors)")
	flag.Parse()
	if *cniSelectors != "" {
		enrolled, err := cniEnrolled(*cniSelectors, *labels, *annotations, *nsLabels)
		if err != nil {
			fail("%v", err)
		}
		emit(map[string]bool{"enrolled": enrolled})
		return
	}
	if *pod == "" || *ip == "" {
		fail("need -pod and -ip")
	}
	var lbl map[string]string
	if err := json.Unmarshal([]byte(*labels), &lbl); err != nil {
		fail("-labels: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	node := buildNode(*nodeType, *pod, *ns, *ip, *sa, lbl)
	if *nodeType == "ztunnel" {
		out, err := fetchAmbient(ctx, *addr, node)
		if err != nil {
			fail("%v", err)
		}
		emit(out)
		return
	}
	out, err := fetch(ctx, *addr, node)
	if err != nil {
		fail("%v", err)
	}
	emit(out)
}

func emit(v any) {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", " ")
	if err := enc.Encode(v); err != nil {
		fail("%v", err)
	}
}

// cniEnrolled is istio-cni's node agent's decision for one pod (CompiledEnablementSelectors.Matches)
// with the enablement selectors of the pinned istio-cni chart's values.
func cniEnrolled(valuesFile, podLabels, podAnnotations, nsLabels string) (bool, error) {
	raw, err := os.ReadFile(valuesFile)
	if err != nil {
		return false, err
	}
	var values struct {
		Defaults struct {
			Ambient struct {
				EnablementSelectors []cniutil.EnablementSelector `json:"enablementSelectors"`
			} `json:"ambient"`
		} `json:"_internal_defaults_do_not_set"`
	}
	if err := yaml.Unmarshal(raw, &values); err != nil {
		return false, fmt.Errorf("%s: %w", valuesFile, err)
	}
	sel := values.Defaults.Ambient.EnablementSelectors
	if len(sel) == 0 {
		return false, fmt.Errorf("%s: no ambient.enablementSelectors", valuesFile)
	}
	compiled, err := cniutil.NewCompiledEnablementSelectors(sel)
	if err != nil {
		return false, err
	}
	var pl, pa, nl map[string]string
	for _, x := range []struct {
		s   string
		out *map[string]string
	}{{podLabels, &pl}, {podAnnotations, &pa}, {nsLabels, &nl}} {
		if err := json.Unmarshal([]byte(x.s), x.out); err != nil {
			return false, err
		}
	}
	return compiled.Matches(pl, pa, nl), nil
}

type ambientDump struct {
	Node           string            `json:"node"`
	Addresses      []json.RawMessage `json:"addresses"`
	Authorizations []json.RawMessage `json:"authorizations"`
}

// fetchAmbient subscribes, as ztunnel does, to every Address and Authorization (delta ADS,
// wildcard) and returns the first complete answer to each.
func fetchAmbient(ctx context.Context, addr string, node *core.Node) (*ambientDump, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30)))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	types := []string{v3.AddressType, v3.WorkloadAuthorizationType}
	for _, t := range types {
		if err := stream.Send(&discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: t}); err != nil {
			return nil, err
		}
	}
	got := map[string][]*discovery.Resource{}
	pending := map[string]bool{v3.AddressType: true, v3.WorkloadAuthorizationType: true}
	for len(pending) > 0 {
		resp, err := stream.Recv()
		if err != nil {
			return nil, fmt.Errorf("waiting for %v: %w", keys(pending), err)
		}
		got[resp.TypeUrl] = append(got[resp.TypeUrl], resp.Resources...)
		delete(pending, resp.TypeUrl)
		if err := stream.Send(&discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: resp.TypeUrl,
			ResponseNonce: resp.Nonce}); err != nil { // ACK
			return nil, err
		}
	}
	out := &ambientDump{Node: node.Id}
	for t, res := range got {
		sort.Slice(res, func(i, j int) bool { return res[i].Name < res[j].Name })
		list := make([]json.RawMessage, 0, len(res))
		for _, r := range res {
			msg, err := r.Resource.UnmarshalNew()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", t, err)
			}
			b, err := protojson.Marshal(msg)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", t, err)
			}
			list = append(list, b)
		}
		if t == v3.AddressType {
			out.Addresses = list
		} else {
			out.Authorizations = list
		}
	}
	return out, nil
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "meshray-xds: "+format+"\n", args...)
	os.Exit(1)
}

func buildNode(nodeType, pod, ns, ip, sa string, labels map[string]string) *core.Node {
	lv := map[string]any{}
	for k, v := range labels {
		lv[k] = v
	}
	meta, err := structpb.NewStruct(map[string]any{
		"NAME":              pod,
		"NAMESPACE":         ns,
		"LABELS":            lv,
		"INSTANCE_IPS":      ip,
		"CLUSTER_ID":        "Kubernetes",
		"ISTIO_VERSION":     "1.31.0",
		"SERVICE_ACCOUNT":   sa,
		"INTERCEPTION_MODE": "REDIRECT",
		"WORKLOAD_NAME":     labels["app"],
		"MESH_ID":           "cluster.local",
	})
	if err != nil {
		fail("metadata: %v", err)
	}
	return &core.Node{
		Id:       fmt.Sprintf("%s~%s~%s.%s~%s.svc.cluster.local", nodeType, ip, pod, ns, ns),
		Metadata: meta,
	}
}

func fetch(ctx context.Context, addr string, node *core.Node) (*dump, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30)))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	send := func(typeURL string, names []string, ack *discovery.DiscoveryResponse) error {
		req := &discovery.DiscoveryRequest{Node: node, TypeUrl: typeURL, ResourceNames: names}
		if ack != nil {
			req.VersionInfo, req.ResponseNonce = ack.VersionInfo, ack.Nonce
		}
		return stream.Send(req)
	}
	if err := send(v3.ClusterType, nil, nil); err != nil {
		return nil, err
	}
	if err := send(v3.ListenerType, nil, nil); err != nil {
		return nil, err
	}
	got := map[string]*discovery.DiscoveryResponse{}
	var edsNames, rdsNames []string
	pending := map[string]bool{v3.ClusterType: true, v3.ListenerType: true}
	for len(pending) > 0 {
		resp, err := stream.Recv()
		if err != nil {
			return nil, fmt.Errorf("waiting for %v: %w", keys(pending), err)
		}
		t := resp.TypeUrl
		got[t] = resp
		delete(pending, t)
		names := []string(nil)
		switch t {
		case v3.ClusterType:
			edsNames = edsClusters(resp.Resources)
			if len(edsNames) > 0 {
				pending[v3.EndpointType] = true
			}
		case v3.ListenerType:
			rdsNames = routeNames(resp.Resources)
			if len(rdsNames) > 0 {
				pending[v3.RouteType] = true
			}
		case v3.EndpointType:
			names = edsNames
		case v3.RouteType:
			names = rdsNames
		}
		if err := send(t, names, resp); err != nil { // ACK
			return nil, err
		}
		if t == v3.ClusterType && len(edsNames) > 0 {
			if err := send(v3.EndpointType, edsNames, nil); err != nil {
				return nil, err
			}
		}
		if t == v3.ListenerType && len(rdsNames) > 0 {
			if err := send(v3.RouteType, rdsNames, nil); err != nil {
				return nil, err
			}
		}
	}
	out := &dump{Node: node.Id, Versions: map[string]string{}}
	for t, resp := range got {
		out.Versions[t] = resp.VersionInfo
		list, err := marshalAll(resp.Resources)
		if err != nil {
			return nil, err
		}
		switch t {
		case v3.ClusterType:
			out.Clusters = list
		case v3.EndpointType:
			out.Endpoints = list
		case v3.ListenerType:
			out.Listeners = list
		case v3.RouteType:
			out.Routes = list
		}
	}
	return out, nil
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func edsClusters(res []*anypb.Any) []string {
	var out []string
	for _, r := range res {
		c := &cluster.Cluster{}
		if err := r.UnmarshalTo(c); err != nil {
			continue
		}
		if c.GetType() == cluster.Cluster_EDS {
			name := c.Name
			if c.GetEdsClusterConfig().GetServiceName() != "" {
				name = c.GetEdsClusterConfig().GetServiceName()
			}
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

func routeNames(res []*anypb.Any) []string {
	seen := map[string]bool{}
	for _, r := range res {
		l := &listener.Listener{}
		if err := r.UnmarshalTo(l); err != nil {
			continue
		}
		for _, fc := range l.FilterChains {
			for _, f := range fc.Filters {
				m := &hcm.HttpConnectionManager{}
				if f.GetTypedConfig() == nil || f.GetTypedConfig().UnmarshalTo(m) != nil {
					continue
				}
				if n := m.GetRds().GetRouteConfigName(); n != "" {
					seen[n] = true
				}
			}
		}
	}
	return keysB(seen)
}

func keysB(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func marshalAll(res []*anypb.Any) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, 0, len(res))
	for _, r := range res {
		msg, err := r.UnmarshalNew()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.TypeUrl, err)
		}
		b, err := protojson.Marshal(proto.Message(msg))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.TypeUrl, err)
		}
		out = append(out, b)
	}
	return out, nil
}
