from services.orders.app import wire
from shared.service import serve

serve("orders", wire, title="xo-reseller orders")
