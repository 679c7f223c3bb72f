"""What the kernel says about the CPU: its instruction sets and which CPU it is."""
import os
import platform


def _first_cpu(cpuinfo: str = '/proc/cpuinfo') -> dict:
    """The kernel's description of the first CPU: ``{lower-case key: value}``."""
    if not os.path.isfile(cpuinfo):
        return {}
    fields = {}
    with open(cpuinfo, encoding='utf-8', errors='replace') as file:
        for line in file:
            if not line.strip():
                if fields:
                    break
                continue
            key, _, value = line.partition(':')
            fields.setdefault(key.strip().lower(), value.strip())
    return fields


def cpu_flags(cpuinfo: str = '/proc/cpuinfo') -> set:
    """The instruction-set flags of the first CPU (x86 ``flags``, Arm ``Features``)."""
    fields = _first_cpu(cpuinfo)
    return set((fields.get('flags') or fields.get('features') or '').split())


def cpu_identity(cpuinfo: str = '/proc/cpuinfo') -> dict:
    """Who made the CPU and which one it is: ``vendor`` (x86 ``vendor_id``, Arm
    ``CPU implementer``), ``model`` (``model name``) and ``family`` (``'family 6 model 143
    stepping 8'`` on x86, part and revision on Arm), ``''`` where the kernel does not say."""
    fields = _first_cpu(cpuinfo)
    numbers = [f'{label} {fields[key]}' for key, label in (
        ('cpu family', 'family'), ('model', 'model'), ('stepping', 'stepping'),
        ('cpu part', 'part'), ('cpu revision', 'revision')) if fields.get(key)]
    return dict(vendor=fields.get('vendor_id') or fields.get('cpu implementer', ''),
                model=fields.get('model name') or platform.processor() or platform.machine(),
                family=' '.join(numbers))


def cpu_name(identity: dict = None) -> str:
    """``'GenuineIntel, Intel(R) Xeon(R) Processor (family 6 model 143 stepping 8)'`` from
    :func:`cpu_identity` (this CPU's by default): vendor and model as the kernel names them
    (a virtual machine may show a generic model name; the numbers tell it apart)."""
    identity = cpu_identity() if identity is None else identity
    name = ', '.join(filter(None, (identity.get('vendor'), identity.get('model'))))
    return f"{name} ({identity['family']})" if identity.get('family') else name
