# Certificates for the testbed: our own CA, serving and client certs, the service-account key
# pair. Sourced by cluster-up.sh after lib.sh. Existing files are kept, so restarts reuse them.

# gen_cert NAME CN [ORG] [SANS]: a key and a CA-signed cert in $pki_dir.
gen_cert() {
  local name=$1 cn=$2 org=${3:-} sans=${4:-}
  [ -f "$pki_dir/$name.crt" ] && return 0
  local subj="/CN=$cn" ext="$pki_dir/$name.ext"
  [ -n "$org" ] && subj="/O=$org$subj"
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [ -n "$sans" ]; then
      echo "extendedKeyUsage=serverAuth,clientAuth"
      echo "subjectAltName=$sans"
    else
      echo "extendedKeyUsage=clientAuth"
    fi
  } >"$ext"
  openssl req -new -newkey rsa:2048 -nodes -keyout "$pki_dir/$name.key" -subj "$subj" \
    -out "$pki_dir/$name.csr" 2>/dev/null
  openssl x509 -req -in "$pki_dir/$name.csr" -CA "$pki_dir/ca.crt" -CAkey "$pki_dir/ca.key" \
    -CAcreateserial -days 3650 -extfile "$ext" -out "$pki_dir/$name.crt" 2>/dev/null
  rm -f "$pki_dir/$name.csr" "$ext"
  chmod 600 "$pki_dir/$name.key"
}

# write_kubeconfig FILE CERT_NAME USER: a kubeconfig with embedded client cert.
write_kubeconfig() {
  local file=$1 cert=$2 user=$3
  cat >"$file" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: kubeoc-testbed
  cluster:
    server: $apiserver_url
    certificate-authority-data: $(base64 -w0 "$pki_dir/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 "$pki_dir/$cert.crt")
    client-key-data: $(base64 -w0 "$pki_dir/$cert.key")
contexts:
- name: kubeoc-testbed
  context:
    cluster: kubeoc-testbed
    user: $user
current-context: kubeoc-testbed
KCFG
  chmod 600 "$file"
}

pki_up() {
  mkdir -p "$pki_dir"
  chmod 700 "$pki_dir"
  if [ ! -f "$pki_dir/ca.crt" ]; then
    say "creating the testbed CA and certificates in $pki_dir"
    openssl req -x509 -new -newkey rsa:2048 -nodes -keyout "$pki_dir/ca.key" -days 3650 \
      -subj "/CN=kubeoc-testbed-ca" -out "$pki_dir/ca.crt" 2>/dev/null
    chmod 600 "$pki_dir/ca.key"
  fi
  local apiserver_sans="DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
  apiserver_sans+=",DNS:kubernetes.default.svc.cluster.local,DNS:localhost"
  apiserver_sans+=",IP:127.0.0.1,IP:$bridge_ip,IP:10.96.0.1"
  gen_cert apiserver kube-apiserver "" "$apiserver_sans"
  gen_cert admin kubernetes-admin system:masters
  gen_cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
  gen_cert controller-manager system:kube-controller-manager
  gen_cert scheduler system:kube-scheduler
  gen_cert node system:node:testbed-node-0 system:nodes "DNS:testbed-node-0,IP:$bridge_ip"
  if [ ! -f "$pki_dir/sa.key" ]; then
    openssl genrsa -out "$pki_dir/sa.key" 2048 2>/dev/null
    openssl rsa -in "$pki_dir/sa.key" -pubout -out "$pki_dir/sa.pub" 2>/dev/null
    chmod 600 "$pki_dir/sa.key"
  fi
  write_kubeconfig "$kubeconfig" admin kubernetes-admin
  write_kubeconfig "$state_dir/controller-manager.kubeconfig" controller-manager system:kube-controller-manager
  write_kubeconfig "$state_dir/scheduler.kubeconfig" scheduler system:kube-scheduler
  write_kubeconfig "$state_dir/node.kubeconfig" node system:node:testbed-node-0
}
