from botocore.exceptions import BotoCoreError, ClientError
from django import forms
from django.db import transaction

from portal.forms import PortalFormMixin, SecretFieldsMixin, SecretInput, SecretTextarea
from portal.roles import CHANGE, Area, has_perm
from profiles import aws_checks, catalog
from profiles.choices import InfrastructureKind
from profiles.forms.validators import validate_hosts, validate_kubeconfig, validate_ssh_private_key
from profiles.kubeconfig import in_cluster_problem
from profiles.models import Infrastructure, InstanceType

CLOUD = InfrastructureKind.PUBLIC_CLOUD
DATA_CENTER = InfrastructureKind.DATA_CENTER
KUBERNETES = InfrastructureKind.KUBERNETES

# The fields each kind uses; the others are cleared on save so a kind switch leaves no
# stale (and possibly secret) values behind.
KIND_FIELDS = {
    CLOUD: {"provider", "region", "kubernetes_version", "credentials"},
    DATA_CENTER: {
        "platform",
        "endpoint",
        "hosts",
        "username",
        "password",
        "ssh_private_key",
        "operating_system",
        "gpu_model",
        "gpus_per_node",
        "kubernetes_version",
    },
    KUBERNETES: {"kubeconfig", "in_cluster", "kubernetes_version", "gpu_model", "gpus_per_node"},
    InfrastructureKind.LOCAL: set(),
}
OPTIONAL_FIELDS = {
    "provider": "",
    "region": "",
    "kubernetes_version": "",
    "credentials": {},
    "platform": "",
    "endpoint": "",
    "hosts": "",
    "username": "",
    "password": "",
    "ssh_private_key": "",
    "operating_system": "",
    "gpu_model": "",
    "gpus_per_node": 0,
    "kubeconfig": "",
    "in_cluster": False,
}


class HttpsURLField(forms.URLField):
    """A URL field that reads "vcenter.example.com" as https://, as Django 6 will."""

    def __init__(self, **kwargs):
        kwargs.setdefault("assume_scheme", "https")
        super().__init__(**kwargs)


def credential_field_name(provider: str, key: str) -> str:
    return f"cred_{provider}_{key}"


def eks_field_name(key: str) -> str:
    return f"eks_{key}"


# The EKS settings' fields: what the AWS driver provisions with (`aws_checks.EKS_SETTINGS`).
EKS_HELP = {
    "cluster_name": "The EKS cluster workspaces' node groups join; leave empty for "
    "gpu-paas-<this entry's name>, kept when the entry is renamed. Created when missing. "
    "It (and the region) can change only while nothing runs on the entry.",
    "cluster_role_arn": "The role EKS uses to create and run the cluster (trusted by "
    "eks.amazonaws.com). Needed when the cluster does not exist yet, and for super-sized "
    "profiles' dedicated clusters.",
    "node_role_arn": "The role of the GPU nodes (trusted by ec2.amazonaws.com), with the "
    "AmazonEKSWorkerNodePolicy, AmazonEC2ContainerRegistryReadOnly and AmazonEKS_CNI_Policy "
    "policies.",
    "subnet_ids": "Subnets of one VPC, in at least two Availability Zones; one per line or "
    "separated by commas.",
    "security_group_ids": "Optional: extra security groups for the cluster, in the subnets' VPC.",
}
EKS_LIST_KEYS = ("subnet_ids", "security_group_ids")
# Fields the health check does not depend on: editing only these keeps its result true.
HEALTH_NEUTRAL_FIELDS = {"name", "description", "single_user_host"}


def _blank(label: str) -> list[tuple[str, str]]:
    return [("", label)]


class InfrastructureForm(PortalFormMixin, SecretFieldsMixin, forms.ModelForm):
    secret_fields = ("password", "ssh_private_key", "kubeconfig")

    provider = forms.ChoiceField(required=False)
    region = forms.ChoiceField(required=False)
    kubernetes_version = forms.ChoiceField(required=False)
    instance_types = forms.MultipleChoiceField(
        required=False,
        widget=forms.SelectMultiple(attrs={"size": 10}),
        help_text="The instance types workspaces may use. Hold Ctrl or ⌘ to pick several.",
    )
    platform = forms.ChoiceField(required=False, label="Infrastructure type")
    operating_system = forms.ChoiceField(required=False)
    gpu_model = forms.ChoiceField(required=False, label="GPU type")
    gpus_per_node = forms.IntegerField(
        required=False, min_value=0, label="GPUs per node", widget=forms.NumberInput()
    )

    class Meta:
        model = Infrastructure
        fields = [
            "name",
            "description",
            "kind",
            "provider",
            "region",
            "kubernetes_version",
            "platform",
            "endpoint",
            "hosts",
            "username",
            "password",
            "ssh_private_key",
            "operating_system",
            "gpu_model",
            "gpus_per_node",
            "in_cluster",
            "kubeconfig",
            "single_user_host",
        ]
        widgets = {
            "description": forms.Textarea(attrs={"rows": 2}),
            "hosts": forms.Textarea(attrs={"rows": 3}),
            "password": SecretInput(),
            "ssh_private_key": SecretTextarea(attrs={"rows": 4}),
            "kubeconfig": SecretTextarea(attrs={"rows": 6}),
        }
        labels = {"endpoint": "Endpoint URL"}
        field_classes = {"endpoint": HttpsURLField}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.was_new = self.instance.pk is None
        self.fields["provider"].choices = _blank("Choose a provider") + catalog.choices_providers()
        self.fields["region"].choices = _blank("Choose a region") + catalog.choices_regions()
        self.fields["kubernetes_version"].choices = (
            _blank("Choose a version") + catalog.choices_kubernetes_versions()
        )
        self.fields["instance_types"].choices = _instance_type_choices()
        self.fields["platform"].choices = _blank("Choose a type") + catalog.choices_platforms()
        self.fields["operating_system"].choices = (
            _blank("Choose an OS") + catalog.choices_operating_systems()
        )
        self.fields["gpu_model"].choices = _blank("No GPU") + catalog.choices_gpu_models()
        self._add_credential_fields()
        self._add_eks_fields()
        if self.user is not None and has_perm(self.user, Area.USERS, CHANGE):  # Org admins only
            field = self.fields["single_user_host"]
            field.help_text = f"{self.instance.isolation_status or ''} {field.help_text}".strip()
        else:
            del self.fields["single_user_host"]
        if self.instance.pk:
            self.fields["instance_types"].initial = list(
                self.instance.instance_types.values_list("name", flat=True)
            )

    def _add_credential_fields(self) -> None:
        stored = self.instance.credentials if self.instance.pk else {}
        same_provider = bool(self.instance.pk)
        self.credential_fieldsets = []
        for provider in catalog.PROVIDERS.values():
            names = []
            for key, label, help_text in provider.credential_fields:
                name = credential_field_name(provider.code, key)
                is_set = same_provider and self.instance.provider == provider.code and key in stored
                self.fields[name] = forms.CharField(
                    label=label,
                    required=False,
                    help_text=help_text,
                    widget=_credential_widget(key),
                )
                self.fields[name].widget.attrs["placeholder"] = (
                    "Set. Leave blank to keep." if is_set else "Not set."
                )
                self.fields[name].secret_is_set = is_set
                names.append(name)
            self.credential_fieldsets.append((provider, names))

    def _add_eks_fields(self) -> None:
        stored = self.instance.credentials if self.instance.provider == "aws" else {}
        for key, label in aws_checks.EKS_SETTINGS.items():
            lists = key in EKS_LIST_KEYS
            value = stored.get(key) or ""
            self.fields[eks_field_name(key)] = forms.CharField(
                label=label,
                required=False,
                max_length=2000,
                help_text=EKS_HELP[key],
                initial="\n".join(aws_checks.split_ids(value)) if lists else value,
                widget=forms.Textarea(attrs={"rows": 2}) if lists else forms.TextInput(),
            )

    @property
    def fieldsets(self):
        sets = [
            ("Infrastructure", ["name", "description", "kind"], ""),
            ("Public cloud", ["provider", "region", "instance_types"], f"kind={CLOUD}"),
        ]
        for provider, names in self.credential_fieldsets:
            sets.append(
                (f"{provider.name} credentials", names, f"kind={CLOUD}&provider={provider.code}")
            )
            if provider.code == "aws":
                eks = [eks_field_name(key) for key in aws_checks.EKS_SETTINGS]
                sets.append(("Amazon EKS", eks, f"kind={CLOUD}&provider=aws"))
        sets += [
            (
                "Data center",
                ["platform", "endpoint", "hosts", "operating_system"],
                f"kind={DATA_CENTER}",
            ),
            (
                "Data center credentials",
                ["username", "password", "ssh_private_key"],
                f"kind={DATA_CENTER}",
            ),
            ("Existing Kubernetes cluster", ["in_cluster", "kubeconfig"], f"kind={KUBERNETES}"),
            ("Kubernetes", ["kubernetes_version"], f"kind={CLOUD},{DATA_CENTER},{KUBERNETES}"),
            ("GPU nodes", ["gpu_model", "gpus_per_node"], f"kind={DATA_CENTER},{KUBERNETES}"),
            ("This machine", ["single_user_host"], f"kind={InfrastructureKind.LOCAL}"),
        ]
        return sets

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("kind")
        self._keep_stored_secrets(cleaned)
        self._refuse_changing_what_runs_there(cleaned)
        if kind == CLOUD:
            self._clean_public_cloud(cleaned)
        elif kind == DATA_CENTER:
            self._clean_data_center(cleaned)
        elif kind == KUBERNETES:
            self._clean_kubernetes(cleaned)
        if kind in (DATA_CENTER, KUBERNETES):
            self._clean_gpu_nodes(cleaned)
        cleaned["gpus_per_node"] = cleaned.get("gpus_per_node") or 0
        for name, empty in OPTIONAL_FIELDS.items():
            if kind in KIND_FIELDS and name not in KIND_FIELDS[kind]:
                cleaned[name] = empty
        return cleaned

    def _refuse_changing_what_runs_there(self, cleaned: dict) -> None:
        """The kind and provider choose the driver that deletes what runs here: changed
        under live workspaces, it would look for them where they are not and leave them
        running (and billed)."""
        if not self.instance.pk or "kind" in self.errors:
            return
        if cleaned.get("kind") != self.instance.kind:
            changed = "kind"
        elif cleaned["kind"] == CLOUD and cleaned.get("provider") != self.instance.provider:
            changed = "provider"
        else:
            return
        if changed not in self.errors and self.instance.holds_resources():
            self.add_error(
                changed,
                "Workspaces, warm-pool instances or services still run here; changing "
                "this would leave them running, unmanaged. Delete them (and empty its "
                "warm pools) first.",
            )

    def _require(self, cleaned: dict, *names: str) -> None:
        for name in names:
            if not cleaned.get(name) and name not in self.errors:
                self.add_error(name, "This field is required for this kind of infrastructure.")

    def _clean_public_cloud(self, cleaned: dict) -> None:
        self._require(cleaned, "provider", "region", "kubernetes_version")
        provider = catalog.PROVIDERS.get(cleaned.get("provider") or "")
        if provider is None:
            return
        region = cleaned.get("region")
        if region and not catalog.is_valid_region(provider.code, region):
            self.add_error("region", f"{region} is not a {provider.name} region.")
        version = cleaned.get("kubernetes_version")
        if version and version not in provider.kubernetes_versions:
            supported = ", ".join(provider.kubernetes_versions)
            self.add_error(
                "kubernetes_version",
                f"{provider.managed_kubernetes} supports Kubernetes {supported}.",
            )
        names = cleaned.get("instance_types") or []
        unknown = [n for n in names if catalog.instance_type(provider.code, n) is None]
        if unknown:
            self.add_error(
                "instance_types", f"Not {provider.name} instance types: {', '.join(unknown)}."
            )
        elif not names:
            self.add_error("instance_types", "Choose at least one instance type.")
        credentials = self._clean_credentials(provider)
        # Credentials are optional (the entry is then "not usable"), but half a login is a
        # mistake worth pointing at.
        missing = catalog.missing_credentials(provider.code, credentials) if credentials else []
        for key in missing:
            self.add_error(credential_field_name(provider.code, key), "Needed to log in.")
        settings = {}
        if provider.code == "aws":
            settings = self._clean_eks_settings()
            self._refuse_another_entrys_cluster(cleaned, settings)
            self._refuse_moving_what_runs(cleaned, settings)
            if credentials and not missing and not self.errors:
                self._check_aws(credentials, settings, cleaned)
            settings["cluster_name"] = self._cluster_name(cleaned, settings)
        # The driver reads the EKS settings beside the login (`eks_settings_from`).
        cleaned["credentials"] = credentials | {k: v for k, v in settings.items() if v}

    def _clean_credentials(self, provider) -> dict:
        keep = self.instance.credentials if self.instance.provider == provider.code else {}
        credentials = {}
        for key, _label, _help in provider.credential_fields:
            value = (self.cleaned_data.get(credential_field_name(provider.code, key)) or "").strip()
            if value:
                credentials[key] = value
            elif key in keep:
                credentials[key] = keep[key]
        return credentials

    def _clean_eks_settings(self) -> dict:
        """The EKS settings as the driver reads them (lists of ids), with their syntax
        checked; AWS itself is asked in `_check_aws`."""
        settings: dict = {}
        for key in aws_checks.EKS_SETTINGS:
            raw = (self.cleaned_data.get(eks_field_name(key)) or "").strip()
            settings[key] = list(aws_checks.split_ids(raw)) if key in EKS_LIST_KEYS else raw
        for key, problem in aws_checks.syntax_problems(settings).items():
            self.add_error(eks_field_name(key), problem)
        return settings

    def _is_aws_entry(self) -> bool:
        return bool(self.instance.pk) and self.instance.provider == "aws"

    def _cluster_name(self, cleaned: dict, settings: dict) -> str:
        """The EKS cluster of this entry: the one given, else the one it already uses, else
        gpu-paas-<its name>. Stored with its settings from the first save on: renaming the
        entry must not move it to another cluster, leaving its running node groups (billed)
        on one that nothing looks at any more."""
        if settings.get("cluster_name"):
            return settings["cluster_name"]
        if self._is_aws_entry():  # `self.instance` still has the stored name and settings
            stored = (self.instance.credentials or {}).get("cluster_name")
            return aws_checks.eks_cluster_name(self.instance.name, stored)
        return aws_checks.eks_cluster_name(cleaned.get("name") or "", None)

    def _refuse_another_entrys_cluster(self, cleaned: dict, settings: dict) -> None:
        """One EKS cluster per AWS entry: the driver finds node groups by name on its
        entry's cluster, so two entries on one cluster would each list the other's."""
        field = eks_field_name("cluster_name")
        region = cleaned.get("region")
        if not (cleaned.get("name") and region) or field in self.errors:
            return
        cluster = self._cluster_name(cleaned, settings)
        others = Infrastructure.objects.filter(kind=CLOUD, provider="aws", region=region)
        sharing = [
            other
            for other in others.exclude(pk=self.instance.pk)
            if aws_checks.eks_cluster_name(
                other.name, (other.credentials or {}).get("cluster_name")
            )
            == cluster
        ]
        if not sharing:
            return
        other = sharing[0]
        if settings.get("cluster_name") or self._is_aws_entry():
            problem = f"{other} already uses EKS cluster {cluster} in {region}."
        else:
            problem = (
                f"Left empty, this is {cluster} (from this entry's name), which {other} "
                f"already uses in {region}."
            )
        self.add_error(field, f"{problem} Give this entry a cluster of its own.")

    def _refuse_moving_what_runs(self, cleaned: dict, settings: dict) -> None:
        """The driver finds an entry's node groups on its cluster in its region: moving the
        entry to another while workspaces run would leave their node groups running (and
        billed) where the portal no longer looks, and never deleted."""
        if not self._is_aws_entry() or not cleaned.get("region"):
            return
        before = self._cluster_name({}, {}), self.instance.region
        after = self._cluster_name(cleaned, settings), cleaned["region"]
        if after == before or not self.instance.holds_resources():
            return
        field = "region" if after[1] != before[1] else eks_field_name("cluster_name")
        self.add_error(
            field,
            f"Workspaces, warm-pool instances or services still run on EKS cluster "
            f"{before[0]} in {before[1]}; moving this entry would leave their node groups "
            "running, unmanaged. Delete them (and empty its warm pools) first.",
        )

    def _check_aws(self, credentials: dict, settings: dict, cleaned: dict) -> None:
        """Ask AWS whether it accepts new credentials, what the instance types are, and
        whether the EKS settings exist and fit EKS.

        Only what changed is checked: an unrelated edit must not depend on AWS answering.
        """
        stored = self.instance.credentials if self.instance.pk else {}
        login_changed = not (
            self.instance.pk
            and self.instance.provider == "aws"
            and credentials == {k: v for k, v in stored.items() if k not in aws_checks.EKS_SETTINGS}
            and cleaned.get("region") == self.instance.region
        )
        given = {k: v for k, v in settings.items() if v}
        settings_changed = given != {
            k: v for k, v in stored.items() if k in aws_checks.EKS_SETTINGS
        }
        if not login_changed and not (given and settings_changed):
            return
        region = cleaned["region"]
        first_key = "role_arn" if credentials.get("role_arn") else "access_key_id"
        login_field = credential_field_name("aws", first_key)
        try:
            session, identity = aws_checks.sign_in(credentials, region, aws_checks.endpoint_url())
        except aws_checks.AwsCredentialsError as error:
            self.add_error(login_field, str(error))
            return
        except ClientError as error:
            code = error.response["Error"].get("Code", "")
            message = error.response["Error"].get("Message", "")
            self.add_error(login_field, f"AWS answered {code}: {message}")
            return
        except BotoCoreError as error:
            self.add_error(login_field, f"Cannot reach AWS STS in {region}: {error}")
            return
        if login_changed:
            self.success_detail = (
                f"AWS accepted the credentials: {identity['Arn']} (account {identity['Account']})."
            )
            self._check_instance_types(session, cleaned)
        if given:
            self._check_eks_settings(session, settings, identity["Account"])

    def _check_instance_types(self, session, cleaned: dict) -> None:
        try:
            self.aws_facts = aws_checks.describe_instance_type_facts(
                cleaned.get("instance_types") or [],
                cleaned["region"],
                endpoint_url=aws_checks.endpoint_url(),
                session=session,
            )
        except (aws_checks.AwsCredentialsError, ClientError, BotoCoreError) as error:
            self.add_error("instance_types", f"AWS did not describe the instance types: {error}")
            return
        offered = set(self.aws_facts)
        absent = [n for n in cleaned.get("instance_types") or [] if n not in offered]
        if absent:
            self.add_error(
                "instance_types",
                f"Not offered in {cleaned['region']}: {', '.join(absent)}.",
            )

    def _check_eks_settings(self, session, settings: dict, account: str) -> None:
        first = eks_field_name(next(k for k, v in settings.items() if v))
        try:
            problems = aws_checks.check_eks_settings(
                session, aws_checks.endpoint_url(), settings, account
            )
        except aws_checks.AwsCredentialsError as error:
            self.add_error(first, str(error))
            return
        except (ClientError, BotoCoreError) as error:
            self.add_error(first, f"AWS did not answer about the EKS settings: {error}")
            return
        for key, problem in problems.items():
            self.add_error(eks_field_name(key), problem)

    def _clean_data_center(self, cleaned: dict) -> None:
        self._require(cleaned, "platform", "operating_system")
        platform = catalog.DATA_CENTER_PLATFORMS.get(cleaned.get("platform") or "")
        if platform is None:
            return
        if platform.needs_endpoint:
            self._require(cleaned, "endpoint")
        if platform.needs_hosts:
            try:
                validate_hosts(cleaned.get("hosts") or "")
            except forms.ValidationError as error:
                self.add_error("hosts", error)
        key = cleaned.get("ssh_private_key")
        if key and key != self.instance.ssh_private_key:
            try:
                validate_ssh_private_key(key)
            except forms.ValidationError as error:
                self.add_error("ssh_private_key", error)

    def _clean_kubernetes(self, cleaned: dict) -> None:
        """A kubeconfig with inline credentials, or the portal's own service account.

        A stored kubeconfig is checked again too: one saved before the inline-only rule
        must be replaced before the entry can be saved.
        """
        self._require(cleaned, "kubernetes_version")
        if cleaned.get("in_cluster"):
            if str(self.data.get(self.add_prefix("kubeconfig")) or "").strip():
                self.add_error(
                    "kubeconfig",
                    "Leave this empty when the portal uses its own service account, or "
                    "untick “Use the portal's service account”.",
                )
            problem = in_cluster_problem()
            if problem:
                self.add_error("in_cluster", problem)
            cleaned["kubeconfig"] = ""  # the service account replaces a stored kubeconfig
            return
        self._require(cleaned, "kubeconfig")
        kubeconfig = cleaned.get("kubeconfig")
        if kubeconfig and "kubeconfig" not in self.errors:
            try:
                validate_kubeconfig(kubeconfig)
            except forms.ValidationError as error:
                self.add_error("kubeconfig", error)

    def _clean_gpu_nodes(self, cleaned: dict) -> None:
        has_model = bool(cleaned.get("gpu_model"))
        count = cleaned.get("gpus_per_node") or 0
        if has_model and count < 1:
            self.add_error("gpus_per_node", "Say how many GPUs of this type one node has.")
        if count and not has_model:
            self.add_error("gpu_model", "Choose the GPU type of these nodes.")
        if count > 16:
            self.add_error("gpus_per_node", "No supported node has more than 16 GPUs.")

    def health_unaffected(self) -> bool:
        """Whether the entry's last health check still describes it after this save: it
        existed and only fields the check does not depend on changed."""
        return not self.was_new and set(self.changed_data) <= HEALTH_NEUTRAL_FIELDS

    @transaction.atomic
    def save(self, commit: bool = True):
        infrastructure = super().save(commit=False)
        infrastructure.credentials = self.cleaned_data.get("credentials") or {}
        if commit:
            infrastructure.save()
            self._save_instance_types(infrastructure)
        return infrastructure

    def _save_instance_types(self, infrastructure: Infrastructure) -> None:
        wanted = set(self.cleaned_data.get("instance_types") or [])
        if infrastructure.kind != CLOUD:
            wanted = set()
        infrastructure.instance_types.exclude(name__in=wanted).delete()
        existing = set(infrastructure.instance_types.values_list("name", flat=True))
        described = getattr(self, "aws_facts", {})
        for name in sorted(wanted - existing):
            # What EC2 itself said wins over the catalog's copy of the same facts.
            facts = described.get(name) or catalog.instance_type(infrastructure.provider, name)
            InstanceType.objects.create(
                infrastructure=infrastructure,
                name=name,
                gpu_model=facts.gpu_model or "",
                gpu_count=facts.gpu_count,
                gpu_memory_gb=facts.gpu_memory_gb,
                vcpu=facts.vcpu,
                ram_gb=facts.ram_gb,
            )


def _credential_widget(key: str) -> forms.Widget:
    # Multi-line secrets (service-account JSON, PEM keys) need a textarea.
    if key in catalog.MULTILINE_CREDENTIAL_KEYS:
        return SecretTextarea(attrs={"rows": 3})
    return SecretInput()


def _instance_type_choices() -> list:
    """Grouped by provider name, which the page's script uses to show the chosen provider's."""
    grouped = []
    for provider in catalog.PROVIDERS.values():
        options = [(t.name, _describe(t)) for t in catalog.instance_types_for(provider.code)]
        grouped.append((provider.name, options))
    return grouped


def _describe(itype) -> str:
    if not itype.gpu_model:
        return f"{itype.name} — CPU only, {itype.vcpu} vCPU, {itype.ram_gb} GiB"
    return (
        f"{itype.name} — {itype.gpu_count}× {itype.gpu_model} ({itype.gpu_memory_gb} GB), "
        f"{itype.vcpu} vCPU, {itype.ram_gb} GiB"
    )
