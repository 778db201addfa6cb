import django_filters

from usage.models import Price


class PriceFilterSet(django_filters.FilterSet):
    class Meta:
        model = Price
        fields = ["kind"]
