#!/usr/bin/env python3
"""Deterministic secret-scanning corpus: realistic files with planted synthetic secrets
(real formats, valid checksums) and hard negatives. Labels go to labels.jsonl.

usage: gen_corpus.py --seed 7 --out DIR [--size-mb 16]
Each label line: {"path": "rel/path", "line": N, "kind": "github-pat", "positive": true|false}
Only positive labels count as ground truth; negatives are listed for inspection.
"""
import argparse, base64, json, os, random, string, zlib

B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
B64URL = string.ascii_letters + string.digits + "-_"


class Gen:
    def __init__(self, seed):
        self.r = random.Random(seed)

    def s(self, n, alphabet=B62):
        return "".join(self.r.choice(alphabet) for _ in range(n))

    def hexs(self, n):
        return self.s(n, "0123456789abcdef")

    def b62_fixed(self, v, width=6):
        out = []
        for _ in range(width):
            out.append(B62[v % 62]); v //= 62
        return "".join(reversed(out))

    def crc_token(self, prefix):
        body = self.s(30)
        return prefix + body + self.b62_fixed(zlib.crc32(body.encode()))

    def bad_crc_token(self, prefix):
        t = self.crc_token(prefix)
        last = t[-1]
        return t[:-1] + ("A" if last != "A" else "B")

    def stw(self):
        raw = bytes(self.r.getrandbits(8) for _ in range(32))
        n = int.from_bytes(raw, "big")
        body = self.b62_fixed(n, 43)
        # The checksum is the CRC32 of the 43-character text (steward_token::api_key).
        return "stw_" + body + self.b62_fixed(zlib.crc32(body.encode()))

    def password(self, n=None, url=False):
        n = n or self.r.randint(12, 22)
        while True:
            p = self.s(n, string.ascii_letters + string.digits + ("~!_." if url else "#%+!^~@"))
            if any(c.islower() for c in p) and any(c.isupper() for c in p) and any(c.isdigit() for c in p) and not p[0] in "@!#":
                low = p.lower()
                if not any(w in low for w in ("test", "pass", "demo", "xxxx", "your", "fake", "mock", "dumm", "secret", "token", "example")):
                    return p

    def jwt(self):
        h = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()).rstrip(b"=").decode()
        payload = {"sub": "svc-" + self.s(8, string.ascii_lowercase), "iat": self.r.randint(1.6e9, 1.8e9), "scope": "read write"}
        p = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
        return f"{h}.{p}.{self.s(43, B64URL)}"

    def pem_lines(self, kind="RSA PRIVATE KEY"):
        body = bytes([0x30, 0x82, 0x04, 0xa4]) + bytes(self.r.getrandbits(8) for _ in range(self.r.choice([600, 900, 1190])))
        b = base64.b64encode(body).decode()
        return [f"-----BEGIN {kind}-----"] + [b[i:i + 64] for i in range(0, len(b), 64)] + [f"-----END {kind}-----"]

    def openssh_lines(self):
        body = b"openssh-key-v1\x00" + bytes(self.r.getrandbits(8) for _ in range(380))
        b = base64.b64encode(body).decode()
        return ["-----BEGIN OPENSSH PRIVATE KEY-----"] + [b[i:i + 70] for i in range(0, len(b), 70)] + ["-----END OPENSSH PRIVATE KEY-----"]

    def pypi(self):
        raw = b"\x02\x01\x08pypi.org\x02\x01\x00\x06\x20" + bytes(self.r.getrandbits(8) for _ in range(80))
        return "pypi-" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    def aws_id(self):
        return "AKIA" + self.s(16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")

    def aws_secret(self):
        while True:
            v = self.s(40, string.ascii_letters + string.digits + "/+")
            if any(c.isdigit() for c in v) and any(c.islower() for c in v) and any(c.isupper() for c in v):
                return v


# ---------- positives: each returns list of (line, is_secret_line) ----------
def positives(g):
    r = g.r
    var = lambda: r.choice(["prod", "main", "billing", "ci", "deploy", "backend", "worker"])
    host = lambda: r.choice(["db.internal", "10.0.3.17", "pg-primary.svc.cluster.local", "mysql.prod.example.net", "cache-01"])
    P = {
        "github-pat": lambda: [(f'GITHUB_TOKEN={g.crc_token("ghp_")}', True)],
        "github-oauth": lambda: [(f'    token = "{g.crc_token("gho_")}"', True)],
        "github-fine-grained-pat": lambda: [(f"  gh_token: github_pat_{g.s(22)}_{g.s(59)}", True)],
        "npm-token": lambda: [(f"//registry.npmjs.org/:_authToken={g.crc_token('npm_')}", True)],
        "steward-key": lambda: [(f'STEWARD_API_KEY="{g.stw()}"', True)],
        "pypi-token": lambda: [("[pypi]", False), ("username = __token__", False), (f"password = {g.pypi()}", True)],
        "slack-bot-token": lambda: [(f'slack_bot = "xoxb-{g.s(11, string.digits)}-{g.s(12, string.digits)}-{g.s(24)}"', True)],
        "slack-webhook": lambda: [(f'  webhook_url: "https://hooks.slack.com/services/T{g.s(10, string.ascii_uppercase + string.digits)}/B{g.s(10, string.ascii_uppercase + string.digits)}/{g.s(24)}"', True)],
        "stripe-secret-key": lambda: [(f"const stripe = require('stripe')('sk_live_{g.s(99)}');", True)],
        "gitlab-pat": lambda: [(f"export GITLAB_TOKEN=glpat-{g.s(20, B62 + '-_')}", True)],
        "aws-pair": lambda: [(f"aws_access_key_id = {g.aws_id()}", True), (f"aws_secret_access_key = {g.aws_secret()}", True)],
        "aws-pair-code": lambda: [(f'    client = boto3.client("s3", aws_access_key_id="{g.aws_id()}",', True), (f'                          aws_secret_access_key="{g.aws_secret()}")', True)],
        "azure-storage": lambda: [(f'"AzureWebJobsStorage": "DefaultEndpointsProtocol=https;AccountName=st{g.s(8, string.ascii_lowercase)};AccountKey={g.s(86, string.ascii_letters + string.digits + "+/")}==;EndpointSuffix=core.windows.net",', True)],
        "openai": lambda: [(f'OPENAI_API_KEY=sk-proj-{g.s(74, B64URL)}T3BlbkFJ{g.s(74, B64URL)}', True)],
        "anthropic": lambda: [(f'client = anthropic.Anthropic(api_key="sk-ant-api03-{g.s(93, B64URL)}AA")', True)],
        "jwt": lambda: [(f'Authorization: Bearer {g.jwt()}', True)],
        "pem": lambda: [(l, i == 0) for i, l in enumerate(g.pem_lines())],
        "pkcs8": lambda: [(l, i == 0) for i, l in enumerate(g.pem_lines("PRIVATE KEY"))],
        "openssh": lambda: [(l, i == 0) for i, l in enumerate(g.openssh_lines())],
        "postgres-url": lambda: [(f'DATABASE_URL=postgresql://app_{var()}:{g.password(url=True)}@{host()}:5432/{var()}', True)],
        "mysql-url": lambda: [(f'    url: "mysql://svc:{g.password(url=True)}@{host()}:3306/orders"', True)],
        "mongodb-url": lambda: [(f'MONGO_URI = "mongodb+srv://reporting:{g.password(url=True)}@cluster0.{g.s(5, string.ascii_lowercase)}.mongodb.net/analytics"', True)],
        "redis-url": lambda: [(f"REDIS_URL=rediss://default:{g.password(url=True)}@{host()}:6380/0", True)],
        "amqp-url": lambda: [(f'broker_url = "amqp://celery:{g.password(url=True)}@rabbit.{var()}:5672//"', True)],
        "dsn": lambda: [(f'conn = psycopg2.connect("host={host()} port=5432 dbname={var()} user=etl password={g.password()} sslmode=require")', True)],
        "ado": lambda: [(f'"Default": "Server=tcp:sql-{var()}.database.windows.net,1433;Database=app;User ID=api;Password={g.password()};Encrypt=True;"', True)],
        "mysql-cli": lambda: [(f"mysql -h {host()} -u admin -p'{g.password()}' -e 'SELECT 1' orders", True)],
        "netrc": lambda: [(f"machine api.{var()}.example.org login deploy password {g.password()}", True)],
        "git-credentials": lambda: [(f"https://ci-bot:{g.crc_token('ghp_')}@github.com", True)],
        "git-credentials-basic": lambda: [(f"https://jenkins:{g.password(url=True)}@git.{var()}.corp.net", True)],
        "docker-auth": lambda: [('    "registry.example.io": {', False), (f'      "auth": "{base64.b64encode(("robot:" + g.password()).encode()).decode()}"', True), ("    }", False)],
        "kube-token": lambda: [("apiVersion: v1", False), ("kind: Config", False), ("users:", False), (f"- name: sa-{var()}", False), ("  user:", False), (f"    token: {g.s(8, string.ascii_lowercase + string.digits)}.{g.s(40, B62)}", True)],
        "maven": lambda: [("  <server>", False), (f"    <id>nexus-{var()}</id>", False), ("    <username>deployer</username>", False), (f"    <password>{g.password()}</password>", True), ("  </server>", False)],
        "env-password": lambda: [(f"{r.choice(['DB_PASSWORD', 'POSTGRES_PASSWORD', 'MYSQL_ROOT_PASSWORD', 'SMTP_PASS', 'ADMIN_PWD'])}={g.password()}", True)],
        "generic-secret": lambda: [(f'{r.choice(["    client_secret", "    api_secret", "  signing_key", "    webhook_secret"])}: "{g.password(r.randint(24, 40))}"', True)],
        "generic-py": lambda: [(f'{r.choice(["SECRET_KEY", "API_TOKEN", "AUTH_TOKEN", "ENCRYPTION_KEY"])} = "{g.password(r.randint(20, 48))}"', True)],
        "sendgrid": lambda: [(f"SENDGRID_API_KEY=SG.{g.s(22, B64URL)}.{g.s(43, B64URL)}", True)],
        "digitalocean": lambda: [(f'  do_token = "dop_v1_{g.hexs(64)}"', True)],
        "huggingface": lambda: [(f"HF_TOKEN=hf_{g.s(34, string.ascii_letters)}", True)],
        "twilio": lambda: [(f'TWILIO_API_KEY = "SK{g.hexs(32)}"', True)],
        "shopify": lambda: [(f"SHOPIFY_ACCESS_TOKEN=shpat_{g.hexs(32)}", True)],
        "gcp-api-key": lambda: [(f'  "apiKey": "AIza{g.s(35, B64URL)}",', True)],
        "databricks": lambda: [(f"DATABRICKS_TOKEN=dapi{g.hexs(32)}", True)],
        "vault": lambda: [(f"VAULT_TOKEN=hvs.{g.s(95, B64URL)}", True)],
        "linear": lambda: [(f"LINEAR_API_KEY=lin_api_{g.s(40)}", True)],
        "docker-pat": lambda: [(f"echo dckr_pat_{g.s(27, B64URL)} | docker login -u ci --password-stdin", True)],
        "age": lambda: [(f"# age key: AGE-SECRET-KEY-1{g.s(58, 'QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L')}", True)],
    }
    return P


def gcp_service_account(g):
    key = "\\n".join(g.pem_lines("PRIVATE KEY")) + "\\n"
    return [("{", False), ('  "type": "service_account",', False), (f'  "project_id": "proj-{g.s(6, string.ascii_lowercase)}",', False),
            (f'  "private_key_id": "{g.hexs(40)}",', False), (f'  "private_key": "{key}",', True),
            (f'  "client_email": "svc@proj.iam.gserviceaccount.com",', False), ('  "token_uri": "https://oauth2.googleapis.com/token"', False), ("}", False)]


# ---------- hard negatives ----------
def negatives(g):
    r = g.r
    return [
        lambda: f'GITHUB_TOKEN={g.bad_crc_token("ghp_")}',
        lambda: f"//registry.npmjs.org/:_authToken={g.bad_crc_token('npm_')}",
        lambda: "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
        lambda: "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        lambda: "token: eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
        lambda: 'password: "${DB_PASSWORD}"',
        lambda: 'db_password = os.environ["DB_PASSWORD"]',
        lambda: "const apiKey = process.env.STRIPE_SECRET_KEY;",
        lambda: "        token: ${{ secrets.GITHUB_TOKEN }}",
        lambda: '  password: {{ .Values.postgres.password | quote }}',
        lambda: 'API_KEY=<your-api-key-here>',
        lambda: "SECRET_KEY=changeme",
        lambda: 'password = "xxxxxxxxxxxxxxxx"',
        lambda: f'api_key_id = "{g.hexs(8)}-{g.hexs(4)}-{g.hexs(4)}-{g.hexs(4)}-{g.hexs(12)}"',
        lambda: f'    "integrity": "sha512-{g.s(86, string.ascii_letters + string.digits + "+/")}==",',
        lambda: f"password_hash = '$2b$12${g.s(53, string.ascii_letters + string.digits + './')}'",
        lambda: f"FROM python:3.12-slim@sha256:{g.hexs(64)}",
        lambda: f'DATABASE_URL=postgres://postgres:postgres@localhost:5432/dev',
        lambda: f'url = "postgresql://user:password@localhost/mydb"',
        lambda: f'  "image/png": "iVBORw0KGgoAAAANSUhEUgAA{g.s(120, string.ascii_letters + string.digits + "+/")}"',
        lambda: f"commit_sha = \"{g.hexs(40)}\"",
        lambda: f'    password = getpass.getpass("Password: ")',
        lambda: f"    token = request.headers.get('Authorization')",
        lambda: f'sk_live_xxxxxxxxxxxxxxxxxxxxxxxx',
        lambda: f"  secret: !Ref DatabaseSecret",
        lambda: f'api_token = settings.API_TOKEN',
        lambda: f"-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----",
        lambda: f"max_tokens = {r.randint(100, 4096)}",
        lambda: f"cache_key = \"{g.s(32)}\"",
        lambda: f'request_id = "{g.s(24)}"',
        lambda: f"  certificate-authority-data: {base64.b64encode(b'-----BEGIN CERTIFICATE-----' + bytes(60)).decode()}",
        lambda: f"mysql -u root -p$MYSQL_ROOT_PASSWORD",
        lambda: f'if password == "{g.s(6, string.ascii_lowercase)}":',
        lambda: f"private_key_path = \"/etc/ssl/private/{g.s(6, string.ascii_lowercase)}.pem\"",
    ]


# ---------- filler ----------
WORDS = "user order invoice account session cache queue payment report metric event stream client server handler request response config module service item record batch job".split()


def filler(g, kind, n):
    r = g.r
    w = lambda: r.choice(WORDS)
    lines = []
    for i in range(n):
        if kind == "py":
            lines.append(r.choice([
                f"def {w()}_{w()}(self, {w()}_id: int) -> dict:", f"    return self.{w()}.get({w()}_id, {{}})",
                f"    logger.info(\"processing %s\", {w()})", f"import {w()}", f"from .{w()} import {w().title()}{w().title()}",
                f"    if not {w()}: raise ValueError(\"missing {w()}\")", "", f"# TODO: batch {w()} writes", f"    {w()}_count += {r.randint(1, 9)}",
                f"class {w().title()}{w().title()}(Base):", f"    __tablename__ = \"{w()}s\"", f"    {w()} = Column(String({r.choice([32, 64, 255])}))"]))
        elif kind == "js":
            lines.append(r.choice([
                f"export async function {w()}{w().title()}(req, res) {{", f"  const {w()} = await db.{w()}.findOne({{ id: req.params.id }});",
                f"  res.json({{ {w()}: {w()}.{w()} }});", "}", f"import {{ {w()} }} from './{w()}';", f"// eslint-disable-next-line no-console",
                f"  if (!{w()}) return res.status({r.choice([400, 404, 409])}).end();", f"const {w().upper()}_TIMEOUT_MS = {r.randint(100, 90000)};"]))
        elif kind == "go":
            lines.append(r.choice([
                f"func (s *{w().title()}Service) {w().title()}(ctx context.Context, id string) error {{", f"\tif err := s.{w()}.Load(ctx, id); err != nil {{",
                f"\t\treturn fmt.Errorf(\"load {w()}: %w\", err)", "\t}", "}", f"\t{w()} := make(map[string]int, {r.randint(1, 64)})", f"import \"{w()}/{w()}\""]))
        elif kind == "yaml":
            lines.append(r.choice([
                f"  {w()}_{w()}: {r.randint(1, 1000)}", f"  {w()}: {w()}-{w()}", f"{w()}:", f"    - name: {w()}-{w()}", f"      image: registry.local/{w()}:{r.randint(1, 9)}.{r.randint(0, 20)}",
                f"      replicas: {r.randint(1, 5)}", f"    enabled: {r.choice(['true', 'false'])}", f"  timeout: {r.randint(1, 60)}s"]))
        elif kind == "tf":
            lines.append(r.choice([
                f"resource \"aws_s3_bucket\" \"{w()}\" {{", f"  bucket = \"{w()}-{w()}-{r.randint(1, 999)}\"", f"  tags = {{ Team = \"{w()}\" }}", "}",
                f"variable \"{w()}_{w()}\" {{ type = string }}", f"  instance_type = \"t3.{r.choice(['micro', 'small', 'large'])}\""]))
        elif kind == "sql":
            lines.append(f"INSERT INTO {w()}s (id, {w()}, {w()}) VALUES ({r.randint(1, 99999)}, '{w()}', '{g.s(10, string.ascii_lowercase)}');")
        elif kind == "log":
            lines.append(f"2025-0{r.randint(1, 9)}-1{r.randint(0, 9)}T1{r.randint(0, 9)}:0{r.randint(0, 9)}:2{r.randint(0, 9)}Z INFO {w()} {w()} id={g.hexs(16)} took={r.randint(1, 900)}ms")
        else:
            lines.append(f"{w().upper()}_{w().upper()}={w()}")
    return lines


KINDS = [("src/{}/{}.py", "py"), ("web/{}/{}.js", "js"), ("svc/{}/{}.go", "go"), ("deploy/{}/{}.yaml", "yaml"),
         ("infra/{}/{}.tf", "tf"), ("dumps/{}/{}.sql", "sql"), ("logs/{}/{}.log", "log"), ("config/{}/{}.env", "env"),
         (".github/workflows/{}-{}.yml", "yaml"), ("docker/{}/{}.Dockerfile", "env"), ("notebooks/{}/{}.ipynb", "js"),
         ("conf/{}/{}.toml", "env"), ("k8s/{}/{}.yaml", "yaml"), ("config/{}/{}.json", "js")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", required=True)
    ap.add_argument("--size-mb", type=float, default=16)
    a = ap.parse_args()
    g = Gen(a.seed)
    r = g.r
    pos = positives(g)
    neg = negatives(g)
    os.makedirs(a.out, exist_ok=True)
    labels = []
    total, index = 0, 0
    target = int(a.size_mb * 1024 * 1024)
    while total < target:
        index += 1
        tmpl, kind = r.choice(KINDS)
        rel = tmpl.format(r.choice(WORDS), f"{r.choice(WORDS)}_{index}")
        entries = [(l, None) for l in filler(g, kind, r.randint(80, 400))]
        special = r.random()
        blocks = []
        if special < 0.05:
            blocks.append((gcp_service_account(g), "gcp-service-account"))
        elif special < 0.09:
            pw = g.password()
            tok = g.s(40)
            kube = ["apiVersion: v1", "kind: Secret", "metadata:", f"  name: {r.choice(WORDS)}-creds", "type: Opaque", "data:",
                    f"  username: {base64.b64encode(b'admin').decode()}"]
            blocks.append(([(l, False) for l in kube] + [(f"  password: {base64.b64encode(pw.encode()).decode()}", True),
                                                          (f"  api-token: {base64.b64encode(tok.encode()).decode()}", True)], "k8s-secret"))
        n_pos = r.choice([0, 0, 1, 1, 2, 3])
        for _ in range(n_pos):
            name = r.choice(list(pos))
            blocks.append((pos[name](), name))
        for _ in range(r.choice([0, 1, 2, 3, 4])):
            text = r.choice(neg)()
            blocks.append(([(l, False) for l in text.split("\n")], "negative"))
        # Blocks go between filler lines, never inside another block.
        chunks = [[e] for e in entries]
        for block, name in blocks:
            at = r.randint(0, len(chunks))
            chunks.insert(at, [(l, (name if flag else None) if name != "negative" else "NEG") for l, flag in block])
        entries = [e for c in chunks for e in c]
        path = os.path.join(a.out, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        text = "\n".join(l for l, _ in entries) + "\n"
        with open(path, "w") as f:
            f.write(text)
        total += len(text)
        for i, (_, label) in enumerate(entries, 1):
            if label == "NEG":
                labels.append({"path": rel, "line": i, "kind": "negative", "positive": False})
            elif label:
                labels.append({"path": rel, "line": i, "kind": label, "positive": True})
    with open(os.path.join(a.out, "..", os.path.basename(a.out.rstrip("/")) + ".labels.jsonl"), "w") as f:
        for l in labels:
            f.write(json.dumps(l) + "\n")
    print(f"files={index} bytes={total} positives={sum(l['positive'] for l in labels)} negatives={sum(not l['positive'] for l in labels)}")


if __name__ == "__main__":
    main()
