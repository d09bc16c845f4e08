// deploy/kubernetes and the Dockerfile, read as a cluster and a builder would: the Kubernetes API schema, probes on the admin port's /livez and /readyz, configs our checker accepts, selectors that match, non-root read-only containers.

import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { parseConfig } from "../../src/config/load.ts";
import { parseAddress } from "../../src/config/schema.ts";

const ROOT = resolve(import.meta.dir, "../..");
const K8S = join(ROOT, "deploy/kubernetes");

type Obj = Record<string, any>;

function yamlFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? yamlFiles(join(dir, e.name)) : /\.ya?ml$/.test(e.name) ? [join(dir, e.name)] : [],
  );
}

/** Every document of every manifest, with the file it came from. */
const docs: { file: string; doc: Obj }[] = yamlFiles(K8S).flatMap((file) => {
  const parsed = Bun.YAML.parse(readFileSync(file, "utf8")) as Obj | Obj[];
  return (Array.isArray(parsed) ? parsed : [parsed]).filter((d) => d !== null).map((doc) => ({ file: relative(K8S, file), doc }));
});

const ofKind = (kind: string, dir: string) => docs.filter((d) => d.doc.kind === kind && d.file.startsWith(`${dir}/`)).map((d) => d.doc);
const matches = (selector: Obj, labels: Obj) => Object.entries(selector).every(([k, v]) => labels?.[k] === v);

/** The heliosproxy container of a pod spec (a container, or a native sidecar among the init containers). */
function proxyContainer(pod: Obj): Obj {
  const all = [...(pod.initContainers ?? []), ...(pod.containers ?? [])];
  const c = all.find((x: Obj) => x.name === "heliosproxy");
  if (!c) throw new Error("no heliosproxy container");
  return c;
}

/** The proxy.toml of the ConfigMap the container mounts at /etc/heliosproxy, checked by our config loader. */
function mountedConfig(dir: string, pod: Obj, c: Obj) {
  const mount = c.volumeMounts.find((m: Obj) => m.mountPath === "/etc/heliosproxy");
  const volume = pod.volumes.find((v: Obj) => v.name === mount.name);
  const cm = ofKind("ConfigMap", dir).find((m) => m.metadata.name === volume.configMap.name)!;
  const text = cm.data["proxy.toml"] as string;
  return parseConfig(text, `${dir}/${cm.metadata.name}:proxy.toml`);
}

function portNumber(c: Obj, port: string | number): number {
  return typeof port === "number" ? port : c.ports.find((p: Obj) => p.name === port).containerPort;
}

/**
 * What the Kubernetes API schema of `doc`'s apiVersion and kind finds wrong in it ("" when valid), through
 * kubernetes-models' validators (generated from the Kubernetes OpenAPI spec).
 */
async function schemaProblems(doc: Obj): Promise<string> {
  const [group, version] = String(doc.apiVersion).includes("/") ? String(doc.apiVersion).split("/") : [null, doc.apiVersion];
  const mod = (await import(`kubernetes-models/${group ? `${group}/` : ""}${version}/${doc.kind}`)) as Record<string, new (d: Obj) => { validate(): void }>;
  const Model = mod[doc.kind];
  if (!Model) throw new Error(`kubernetes-models has no ${doc.apiVersion} ${doc.kind}`);
  try {
    new Model(doc).validate();
    return "";
  } catch (e) {
    return (e as Error).message;
  }
}

describe("deploy/kubernetes", () => {
  test("the manifests parse and name API versions and kinds", () => {
    expect(docs.length).toBeGreaterThanOrEqual(6);
    for (const { file, doc } of docs) {
      expect({ file, apiVersion: typeof doc.apiVersion, kind: typeof doc.kind, name: typeof doc.metadata?.name }).toEqual({
        file,
        apiVersion: "string",
        kind: "string",
        name: "string",
      });
    }
    const kinds = (dir: string) => docs.filter((d) => d.file.startsWith(`${dir}/`)).map((d) => d.doc.kind).sort();
    expect(kinds("standalone")).toEqual(["ConfigMap", "Deployment", "PodDisruptionBudget", "Service"]);
    expect(kinds("sidecar")).toEqual(["ConfigMap", "Deployment"]);
  });

  // Schema validation as kubeconform does it by default (types, required fields, formats; unknown fields are
  // not refused, as without -strict): kubeconform is on no registry here, kubernetes-models carries the
  // Kubernetes API's schemas as validators and runs offline.
  test("every manifest validates against the Kubernetes API schema of its apiVersion and kind", async () => {
    for (const { file, doc } of docs) {
      const problems = await schemaProblems(doc);
      expect({ file, kind: doc.kind, problems }).toEqual({ file, kind: doc.kind, problems: "" });
    }
  });

  test("the schema check is live: a Deployment with a nameless container and a string port is refused", async () => {
    const deployment = structuredClone(ofKind("Deployment", "standalone")[0]!);
    const c = proxyContainer(deployment.spec.template.spec);
    delete c.name;
    c.ports[0].containerPort = String(c.ports[0].containerPort);
    const problems = await schemaProblems(deployment);
    expect(problems).toContain("must have required property name");
    expect(problems).toContain("containerPort must be integer");
  });

  for (const dir of ["standalone", "sidecar"]) {
    test(`${dir}: probes hit /livez and /readyz on the admin port of a config our checker accepts`, () => {
      const [deployment] = ofKind("Deployment", dir);
      const pod = deployment!.spec.template.spec;
      const c = proxyContainer(pod);
      const cfg = mountedConfig(dir, pod, c);
      const adminPort = parseAddress(cfg.proxy.admin_address)!.port;
      // The kubelet probes the pod IP: the admin API must listen beyond loopback.
      expect(parseAddress(cfg.proxy.admin_address)!.host).toBe("0.0.0.0");
      expect(c.livenessProbe.httpGet.path).toBe("/livez");
      expect(c.readinessProbe.httpGet.path).toBe("/readyz");
      for (const probe of [c.livenessProbe, c.readinessProbe, c.startupProbe].filter(Boolean)) {
        expect(["/livez", "/readyz"]).toContain(probe.httpGet.path);
        expect(portNumber(c, probe.httpGet.port)).toBe(adminPort);
      }
      // The config is where the args say, and the shutdown drain ends before the kubelet's SIGKILL.
      expect(c.args).toEqual(["run", "--config", "/etc/heliosproxy/proxy.toml"]);
      expect(cfg.proxy.shutdown_timeout_secs).toBeLessThan(deployment!.spec.template.spec.terminationGracePeriodSeconds);
      // Beyond loopback every other route needs the tokens: both come from a Secret.
      const env = Object.fromEntries(c.env.map((e: Obj) => [e.name, e.valueFrom?.secretKeyRef?.name]));
      expect(env).toMatchObject({ HELIOSPROXY_ADMIN_TOKEN: "heliosproxy-tokens", HELIOSPROXY_READ_TOKEN: "heliosproxy-tokens" });
    });

    test(`${dir}: the proxy runs as non-root with a read-only root and no privileges`, () => {
      const pod = ofKind("Deployment", dir)[0]!.spec.template.spec;
      const c = proxyContainer(pod);
      const sc = { ...pod.securityContext, ...c.securityContext };
      expect(sc.runAsNonRoot).toBe(true);
      expect(sc.runAsUser).toBe(65532);
      expect(c.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } });
    });
  }

  test("standalone: the Service and the PodDisruptionBudget select the Deployment's pods; ports line up with the config", () => {
    const deployment = ofKind("Deployment", "standalone")[0]!;
    const labels = deployment.spec.template.metadata.labels;
    expect(matches(deployment.spec.selector.matchLabels, labels)).toBe(true);
    const service = ofKind("Service", "standalone")[0]!;
    expect(matches(service.spec.selector, labels)).toBe(true);
    const pdb = ofKind("PodDisruptionBudget", "standalone")[0]!;
    expect(matches(pdb.spec.selector.matchLabels, labels)).toBe(true);
    expect(pdb.spec.minAvailable).toBeLessThan(deployment.spec.replicas);
    const pod = deployment.spec.template.spec;
    const c = proxyContainer(pod);
    const cfg = mountedConfig("standalone", pod, c);
    const targets = Object.fromEntries(service.spec.ports.map((p: Obj) => [p.name, portNumber(c, p.targetPort)]));
    expect(targets).toEqual({ postgres: parseAddress(cfg.proxy.listen_address)!.port, admin: parseAddress(cfg.proxy.admin_address)!.port });
  });

  test("sidecar: a native sidecar the application reaches on loopback", () => {
    const pod = ofKind("Deployment", "sidecar")[0]!.spec.template.spec;
    const c = proxyContainer(pod);
    expect(c.restartPolicy).toBe("Always");
    const cfg = mountedConfig("sidecar", pod, c);
    expect(cfg.proxy.listen_address).toBe("127.0.0.1:6432");
    const app = pod.containers.find((x: Obj) => x.name === "app");
    expect(app.env.find((e: Obj) => e.name === "DATABASE_URL").value).toContain("@127.0.0.1:6432/");
  });
});

describe("Dockerfile", () => {
  const text = readFileSync(join(ROOT, "Dockerfile"), "utf8");
  const lines = text.split("\n").filter((l) => l.trim() !== "" && !l.trimStart().startsWith("#"));

  test("builds only the PROFILE build arg's binary, on the Node.js LTS line, into a distroless non-root image", () => {
    expect(text).toMatch(/^ARG BUILD_IMAGE=node:26-bookworm-slim(@sha256:[0-9a-f]{64})?$/m);
    expect(text).toMatch(/^ARG RUNTIME_IMAGE=gcr\.io\/distroless\/cc-debian12:nonroot(@sha256:[0-9a-f]{64})?$/m);
    expect(lines.filter((l) => l.startsWith("FROM "))).toEqual(["FROM ${BUILD_IMAGE} AS build", "FROM ${RUNTIME_IMAGE}"]);
    expect(text).toContain("ARG PROFILE=all");
    const build = lines.find((l) => l.includes("scripts/build.ts"))!;
    expect(build).toContain('scripts/build.ts --no-archive "${PROFILE}"');
    expect(lines).toContain("USER 65532:65532");
    expect(text).toMatch(/^HEALTHCHECK .* CMD \["\/usr\/local\/bin\/heliosproxy", "health"/m);
    // exec form: the proxy itself is PID 1 and gets the signals.
    expect(lines).toContain('ENTRYPOINT ["/usr/local/bin/heliosproxy"]');
  });

  test("every PROFILE the Dockerfile may be given is a profile the build knows", async () => {
    const { PROFILES } = await import("../../scripts/build.ts");
    expect(Object.keys(PROFILES)).toContain(/ARG PROFILE=(\S+)/.exec(text)![1]!);
  });
});
