//! README.md: the steps in order, each with the commands that verify it.

use std::fmt::Write;

use config::{EtcdTopology, Role};

use super::kubeadm::CA_HASH_PLACEHOLDER;
use super::{Ctx, host};

pub(crate) fn render(ctx: &Ctx) -> String {
    let c = ctx.c;
    let o = ctx.o;
    let vip = c.vip.address.addr;
    let endpoint = format!("{}:{}", host(vip), ctx.endpoint.port());
    let iface = &c.vip.interface;
    let cfg = o.config_path.display();
    let masters: Vec<&config::Node> = c.masters().collect();
    let workers: Vec<&config::Node> = c
        .nodes
        .iter()
        .filter(|n| n.is(Role::Worker) && !n.is(Role::Master))
        .collect();
    let topology = c.etcd.as_ref().map(|e| e.topology).unwrap_or_default();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Runbook for cluster `{}`\n\nRendered by `haplane plan`. Do the steps in order; do not start a step before the\nprevious one verifies. Every node's files are in the directory named after it.\n",
        c.cluster
    );
    let _ = writeln!(
        s,
        "| node | address | roles | VRRP priority |\n|---|---|---|---|"
    );
    for n in &c.nodes {
        let roles: Vec<&str> = n.roles.iter().map(|r| r.as_str()).collect();
        let prio = if c.runs_vrrp(n) {
            n.priority.to_string()
        } else {
            "-".into()
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {prio} |",
            n.name,
            n.address,
            roles.join(", ")
        );
    }
    let _ = writeln!(
        s,
        "\nVIP {} on `{iface}`, VRID {}, VRRPv{}. API endpoint `{endpoint}`; apiservers on port {}{}.\n",
        c.vip.address,
        c.vip.vrid,
        if c.vip.version == config::VrrpVersion::V2 {
            2
        } else {
            3
        },
        c.api_server.port,
        if ctx.bind_node_address {
            " bound to each master's own address (kubeadm patch), so the balancer can take the VIP at the same port"
        } else {
            ""
        }
    );

    s.push_str("## 1. Every node: inventory and preflight\n\n");
    let _ = writeln!(
        s,
        "Copy `cluster.yaml` to `{cfg}` and append `hosts` to `/etc/hosts` (never edit them by hand).\n\n```sh\ncat hosts >> /etc/hosts\nhaplane preflight --config {cfg} --node NODE\n```\n\nVerify: preflight prints no FAIL line and exits 0. Fix every FAIL with the fix it prints\n(ports in use, a non-empty /var/lib/etcd, swap, br_netfilter, firewall, SELinux, time sync).\n"
    );

    let mut step = 2;
    if topology == EtcdTopology::External {
        let members = c.etcd_members();
        let pki = o.etcd_pki_dir.display();
        let eps: Vec<String> = members
            .iter()
            .map(|m| format!("https://{}:2379", host(m.address)))
            .collect();
        let _ = writeln!(
            s,
            "## {step}. External etcd ({} members)\n\nMake one CA and, per member, a server and a peer certificate whose SANs hold the\nmember's address and 127.0.0.1, plus a client certificate for the apiservers\n(`/etc/kubernetes/pki/apiserver-etcd-client.crt`) and for haplane. For example:\n\n```sh\nopenssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=etcd-ca -keyout ca.key -out ca.crt\n# per member M with address A (server; repeat with peer.key/peer.crt):\nopenssl req -newkey rsa:2048 -nodes -subj /CN=M -keyout server.key -out server.csr\nopenssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \\\n  -extfile <(printf 'subjectAltName=IP:A,IP:127.0.0.1\\nextendedKeyUsage=serverAuth,clientAuth') -out server.crt\n```\n\nOn each member copy `NODE/etcd.env` to `/etc/default/etcd` (Debian) or `/etc/etcd/etcd.conf`,\nthe certificates to `{pki}`, then `systemctl enable --now etcd`.\n\nVerify (from any member):\n\n```sh\nETCDCTL_API=3 etcdctl --endpoints {} --cacert {pki}/ca.crt --cert {pki}/server.crt --key {pki}/server.key endpoint health\nETCDCTL_API=3 etcdctl --endpoints {} --cacert {pki}/ca.crt --cert {pki}/server.crt --key {pki}/server.key member list\n```\n\nEvery endpoint is healthy and `member list` shows {} members.\n",
            members.len(),
            eps.join(","),
            eps.join(","),
            members.len()
        );
        step += 1;
    }

    vip_nodes_step(ctx, &mut s, step);
    step += 1;

    let first = ctx.first;
    let _ = writeln!(
        s,
        "## {step}. The first master: {}\n\n```sh\n{}kubeadm init --config {}/kubeadm.yaml --upload-certs\n```\n\nVerify:\n\n```sh\nkubectl --kubeconfig /etc/kubernetes/admin.conf get --raw /readyz\ncurl -sk https://{endpoint}/readyz\n```\n\nBoth print `ok`. Then compute the CA hash the joining nodes pin, and put it in every\nother node's `kubeadm.yaml` in place of `{CA_HASH_PLACEHOLDER}`:\n\n```sh\nHASH=sha256:$(openssl x509 -pubkey -noout -in /etc/kubernetes/pki/ca.crt | openssl pkey -pubin -outform der | openssl dgst -sha256 -hex | sed 's/^.* //')\nsed -i \"s/{CA_HASH_PLACEHOLDER}/$HASH/\" */kubeadm.yaml\n```\n\nThe bootstrap token in the files expires after 24h and the uploaded certificates after 2h;\nrenew with `kubeadm token create` and `kubeadm init phase upload-certs --upload-certs`.\nThe kubeadm files hold secrets: keep them mode 0600 and delete them after joining.\n",
        first.name,
        if ctx.bind_node_address {
            format!(
                "install -d {p} && cp {}/patches/* {p}/\n",
                first.name,
                p = o.patches_dir.display()
            )
        } else {
            String::new()
        },
        first.name
    );
    step += 1;

    let others: Vec<&&config::Node> = masters.iter().filter(|m| m.name != first.name).collect();
    if !others.is_empty() {
        let names: Vec<&str> = others.iter().map(|m| m.name.as_str()).collect();
        let _ = writeln!(
            s,
            "## {step}. Join the other masters ({}), one at a time\n\n```sh\n{}kubeadm join --config NODE/kubeadm.yaml\n```\n\nVerify after each: the node is Ready and{}\n\n```sh\nkubectl get nodes -o wide\n{}\n```\n",
            names.join(", "),
            if ctx.bind_node_address {
                format!(
                    "install -d {p} && cp NODE/patches/* {p}/\n",
                    p = o.patches_dir.display()
                )
            } else {
                String::new()
            },
            if topology == EtcdTopology::Stacked {
                " etcd has one more member."
            } else {
                " its apiserver answers /readyz."
            },
            if topology == EtcdTopology::Stacked {
                "kubectl -n kube-system exec etcd-NODE -- etcdctl --endpoints https://127.0.0.1:2379 \\\n  --cacert /etc/kubernetes/pki/etcd/ca.crt --cert /etc/kubernetes/pki/etcd/server.crt \\\n  --key /etc/kubernetes/pki/etcd/server.key member list".to_string()
            } else {
                "curl -sk https://NODE_ADDRESS:PORT/readyz"
                    .replace("PORT", &c.api_server.port.to_string())
            }
        );
        step += 1;
    }

    if !workers.is_empty() {
        let names: Vec<&str> = workers.iter().map(|m| m.name.as_str()).collect();
        let local = c
            .load_balancer
            .node_local_listen
            .first()
            .map(|l| c.resolve_listen(*l));
        let _ = writeln!(
            s,
            "## {step}. Workers ({})\n\n```sh\nkubeadm join --config NODE/kubeadm.yaml\n```\n",
            names.join(", ")
        );
        if let (Some(local), true) = (local, c.load_balancer.enabled) {
            let _ = writeln!(
                s,
                "Then balance locally: start haplane (`NODE/haplane.yaml` or `NODE/haplane.service`) and\npoint the kubelet at it (127.0.0.1 is in the apiserver's certSANs):\n\n```sh\nsed -i 's#server: https://.*#server: https://{}:{}#' /etc/kubernetes/kubelet.conf\nsystemctl restart kubelet\n```\n",
                host(local.ip()),
                local.port()
            );
        }
        s.push_str("Verify: `kubectl get nodes` shows every worker Ready.\n\n");
        step += 1;
    }

    let _ = writeln!(
        s,
        "## {step}. Drill: prove the failover before you need it\n\nFrom a machine outside the cluster, watch the API through the VIP:\n\n```sh\nwhile sleep 0.2; do date +%T.%N | cut -c1-12; curl -sk -m 1 https://{endpoint}/readyz; echo; done\n```\n\n1. On the VIP holder, stop haplane (`systemctl stop haplane`, or move\n   `/etc/kubernetes/manifests/haplane.yaml` away). It advertises priority 0, so a backup takes\n   the VIP within about one advert interval ({}). Check with `ip -br addr show dev {iface}` on\n   every {}: exactly one holds {vip}.\n2. Put haplane back. With `preempt: {}` the VIP {}.\n3. Stop the apiserver on one master (move `kube-apiserver.yaml` out of\n   `/etc/kubernetes/manifests`): the balancer marks it down after {} failed checks and closes\n   its sessions; `kubectl get nodes` keeps working. Put it back.\n4. Note that a moving VIP resets every connection through it; clients reconnect.\n",
        c.vip.advert_interval,
        if c.has_lb_nodes() {
            "lb node"
        } else {
            "master"
        },
        c.vip.preempt,
        if c.vip.preempt {
            "returns to the highest priority"
        } else {
            "stays where it is"
        },
        c.load_balancer.health_check.fall
    );
    s
}

/// The step that brings the VIP up before `kubeadm init`: haplane on the nodes that carry it
/// (the masters, or the dedicated `lb` nodes), and on masters that only run elections.
fn vip_nodes_step(ctx: &Ctx, s: &mut String, step: usize) {
    let c = ctx.c;
    let iface = &c.vip.interface;
    let vip = c.vip.address.addr;
    let topology = c.etcd.as_ref().map(|e| e.topology).unwrap_or_default();
    let routers: Vec<&str> = c.vrrp_nodes().map(|n| n.name.as_str()).collect();
    let lb = c.has_lb_nodes();
    let _ = writeln!(
        s,
        "## {step}. haplane on the {} ({})\n",
        if lb { "lb nodes" } else { "masters" },
        routers.join(", ")
    );
    if lb {
        let _ = writeln!(
            s,
            "These nodes carry the VIP and balance it across the masters' apiservers; they run no\napiserver and no etcd. Install the Debian package and the unit (a node that also has a\nkubelet, role `worker`, may use the image and the static pod `NODE/haplane.yaml` instead):\n\n```sh\ndpkg -i haplane_{version}_amd64.deb\ninstall -D -m 0644 NODE/haplane.service /etc/systemd/system/haplane.service && systemctl enable --now haplane\n```\n\nThe VIP comes up at once, before any apiserver exists; the balancer's backends stay down\nuntil `kubeadm init`.",
            version = env!("CARGO_PKG_VERSION")
        );
        if c.load_balancer.enabled
            && c.load_balancer.health_check.kind == config::CheckType::Https
            && let Some(ca) = &c.load_balancer.health_check.ca_file
        {
            let _ = writeln!(
                s,
                "\nThe HTTPS checks verify the apiservers with `{}`, which `kubeadm init` creates on the\nfirst master. Until it exists on an lb node that node checks with TCP connects; copy it\nafter the init step:\n\n```sh\nscp {}:{ca} LB_NODE:{ca}   # for every lb node\n```",
                ca.display(),
                ctx.first.name,
                ca = ca.display()
            );
        }
        if c.fencing() == config::Fencing::Quorum {
            let etcd = c.etcd.as_ref();
            let files: Vec<String> = etcd
                .into_iter()
                .flat_map(|e| [&e.ca_file, &e.cert_file, &e.key_file])
                .flatten()
                .map(|p| p.display().to_string())
                .collect();
            let _ = writeln!(
                s,
                "\nWith `fencing: quorum` an lb node holds the VIP only while it leads the VIP's election in\nthe masters' etcd ({}), as a client over the network: an lb node cut off from the\nmasters gives the VIP up, and the other lb node takes it if it still reaches the quorum.\nThe fence arms the first time a node reaches etcd; before `kubeadm init` the VIP follows\nplain VRRP.{}",
                c.etcd_endpoints().join(", "),
                if files.is_empty() {
                    String::new()
                } else {
                    format!(
                        " Copy the etcd client files ({}) to the same paths on every lb node.",
                        files.join(", ")
                    )
                }
            );
        }
        let electing: Vec<&str> = c
            .masters()
            .filter(|m| c.runs_elections(m))
            .map(|m| m.name.as_str())
            .collect();
        if !electing.is_empty() {
            let _ = writeln!(
                s,
                "\nThe masters ({}) run haplane for the elections and snapshots only (no VIP, no\nbalancer): install `NODE/haplane.yaml` or `NODE/haplane.service` on each the same way; it\nwaits for etcd.",
                electing.join(", ")
            );
        }
    } else {
        let _ = writeln!(
            s,
            "On each master, either install the Debian package and the unit, or load the image and\nthe static pod (not both; `scripts/package` builds both artifacts, see docs/install.md):\n\n```sh\n# the unit\ndpkg -i haplane_{version}_amd64.deb\ninstall -D -m 0644 NODE/haplane.service /etc/systemd/system/haplane.service && systemctl enable --now haplane\n# or the static pod: the kubelet runs it (image {image})\n{import}install -D -m 0644 NODE/haplane.yaml /etc/kubernetes/manifests/haplane.yaml\n```\n\nThe static pod runs as soon as the kubelet does; it needs no apiserver, so the VIP is up\nbefore `kubeadm init`.{}{commands}",
            if c.fencing() == config::Fencing::Quorum && topology == EtcdTopology::Stacked {
                " With `fencing: quorum` and stacked etcd the VIP appears only once kubeadm's etcd\nruns during `kubeadm init`; haplane keeps retrying until then."
            } else {
                ""
            },
            version = env!("CARGO_PKG_VERSION"),
            image = c.kubernetes.haplane_image,
            import = if c.kubernetes.haplane_image.starts_with("localhost/") {
                format!(
                    "ctr -n k8s.io images import haplane-{}-oci.tar && crictl images | grep haplane\n",
                    env!("CARGO_PKG_VERSION")
                )
            } else {
                String::new()
            },
            commands = if c.vip.track.is_empty()
                && c.vip.notify.is_none()
                && c.elections.iter().all(|e| e.exec.is_none())
            {
                ""
            } else {
                "\nThis cluster file runs commands (track scripts, notify or exec actions): the image holds\nonly haplane, so use the unit, which runs them on the host."
            },
        );
    }
    let _ = writeln!(
        s,
        "\nVerify: exactly one {} holds the VIP, and it is the highest-priority one.\n\n```sh\nip -br addr show dev {iface} | grep -w {vip}\ncurl -s http://{}/status\n```\n",
        if lb { "lb node" } else { "master" },
        c.status.listen
    );
}
