import django_tables2 as tables

from usage.models import Price


class PriceTable(tables.Table):
    item = tables.Column(linkify=True, empty_values=(), orderable=False, accessor="pk")
    kind = tables.Column()
    amount = tables.Column(verbose_name="Price (USD)")
    note = tables.Column()
    updated = tables.DateTimeColumn(format="Y-m-d H:i")

    class Meta:
        model = Price
        fields = ["item", "kind", "amount", "note", "updated"]

    def render_item(self, record):
        return str(record)
